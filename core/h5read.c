/* Reading checkpoints (see h5io.h): attributes, group listings and datasets. Every
 * read validates before it allocates or copies (types, ranks, declared sizes against
 * the file's, chunk sizes), and only hard links are followed. */
#include "h5io_impl.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exact IEEE / two's complement types only (either byte order). */
static blt_h5_type classify(hid_t t)
{
    switch (H5Tget_class(t)) {
    case H5T_FLOAT:
        if (H5Tequal(t, H5T_IEEE_F32LE) > 0 || H5Tequal(t, H5T_IEEE_F32BE) > 0) return BLT_H5_F32;
        if (H5Tequal(t, H5T_IEEE_F64LE) > 0 || H5Tequal(t, H5T_IEEE_F64BE) > 0) return BLT_H5_F64;
        return BLT_H5_OTHER;
    case H5T_INTEGER:
        if (H5Tequal(t, H5T_STD_I32LE) > 0 || H5Tequal(t, H5T_STD_I32BE) > 0) return BLT_H5_I32;
        if (H5Tequal(t, H5T_STD_I64LE) > 0 || H5Tequal(t, H5T_STD_I64BE) > 0) return BLT_H5_I64;
        if (H5Tequal(t, H5T_STD_U64LE) > 0 || H5Tequal(t, H5T_STD_U64BE) > 0) return BLT_H5_U64;
        return BLT_H5_OTHER;
    case H5T_STRING: return BLT_H5_STR;
    default: return BLT_H5_OTHER;
    }
}

/* Opens attribute name of obj; *a = -1 when obj or the attribute is missing. */
static blt_status open_attr(blt_h5 *f, const char *fn, const char *obj, const char *name, hid_t *a)
{
    *a = -1;
    BLT_TRY(blt_h5i_need_open(f, fn));
    BLT_TRY(blt_h5i_check_path(fn, f, obj, 1));
    if (!name || !name[0]) return blt_fail(BLT_EINVAL, "%s: %s: empty attribute name", fn, f->path);
    int t = blt_h5i_object_type(f, fn, obj);
    if (t == -2) return BLT_EFORMAT;
    if (t == H5I_BADID) return BLT_OK;
    htri_t e = H5Aexists_by_name(f->file, obj, name, H5P_DEFAULT);
    if (e < 0) return blt_fail(BLT_EFORMAT, "%s: %s: cannot look up attribute '%s' of '%s' (%s)", fn, f->path, name, obj, blt_h5u_msg());
    if (e == 0) return BLT_OK;
    *a = H5Aopen_by_name(f->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (*a < 0) return blt_fail(BLT_EFORMAT, "%s: %s: cannot open attribute '%s' of '%s' (%s)", fn, f->path, name, obj, blt_h5u_msg());
    /* one value: a scalar or a single-element array */
    hid_t sp = H5Aget_space(*a);
    hssize_t np = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    blt_h5u_close_id(sp);
    if (np != 1) {
        H5Aclose(*a);
        *a = -1;
        return blt_fail(BLT_EFORMAT, "%s: %s: attribute '%s' of '%s' holds %lld values, not one", fn, f->path, name,
                        obj, (long long)np);
    }
    return BLT_OK;
}

blt_status blt_h5_attr_kind(blt_h5 *f, const char *obj, const char *name, int *kind)
{
    blt_h5u_init();
    *kind = BLT_H5_ATTR_NONE;
    hid_t a;
    blt_status s = open_attr(f, "h5_attr", obj, name, &a);
    if (s != BLT_OK && s != BLT_EFORMAT) return s;
    if (s == BLT_EFORMAT && a < 0) {
        /* an attribute that exists but holds several values is "other" */
        if (strstr(blt_errmsg(), "values, not one")) {
            *kind = BLT_H5_ATTR_OTHER;
            return BLT_OK;
        }
        return s;
    }
    if (a < 0) return BLT_OK;
    hid_t t = H5Aget_type(a);
    switch (t < 0 ? H5T_NO_CLASS : H5Tget_class(t)) {
    case H5T_INTEGER: *kind = BLT_H5_ATTR_INT; break;
    case H5T_FLOAT: *kind = BLT_H5_ATTR_FLOAT; break;
    case H5T_STRING: *kind = BLT_H5_ATTR_STR; break;
    default: *kind = BLT_H5_ATTR_OTHER; break;
    }
    blt_h5u_close_id(t);
    H5Aclose(a);
    return BLT_OK;
}

static blt_status read_num_attr(blt_h5 *f, const char *obj, const char *name, H5T_class_t cls, hid_t mtype, void *v)
{
    const char *fn = "h5_attr";
    blt_h5u_init();
    hid_t a;
    BLT_TRY(open_attr(f, fn, obj, name, &a));
    if (a < 0) return blt_fail(BLT_EFORMAT, "%s: %s: no attribute '%s' on '%s'", fn, f->path, name, obj);
    hid_t t = H5Aget_type(a);
    H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    blt_status s = BLT_OK;
    if (c != cls && !(cls == H5T_FLOAT && c == H5T_INTEGER))
        s = blt_fail(BLT_EFORMAT, "%s: %s: attribute '%s' of '%s' is not %s", fn, f->path, name, obj,
                     cls == H5T_INTEGER ? "an integer" : "a number");
    else if (H5Aread(a, mtype, v) < 0)
        s = blt_fail(BLT_EFORMAT, "%s: %s: cannot read attribute '%s' of '%s' (%s)", fn, f->path, name, obj, blt_h5u_msg());
    blt_h5u_close_id(t);
    H5Aclose(a);
    return s;
}

blt_status blt_h5_get_attr_int(blt_h5 *f, const char *obj, const char *name, int64_t *value)
{
    return read_num_attr(f, obj, name, H5T_INTEGER, H5T_NATIVE_INT64, value);
}

blt_status blt_h5_get_attr_float(blt_h5 *f, const char *obj, const char *name, double *value)
{
    return read_num_attr(f, obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, value);
}

blt_status blt_h5_get_attr_str(blt_h5 *f, const char *obj, const char *name, char **value)
{
    const char *fn = "h5_attr";
    *value = NULL;
    blt_h5u_init();
    hid_t a;
    BLT_TRY(open_attr(f, fn, obj, name, &a));
    if (a < 0) return blt_fail(BLT_EFORMAT, "%s: %s: no attribute '%s' on '%s'", fn, f->path, name, obj);
    blt_status s = BLT_OK;
    hid_t t = H5Aget_type(a), mt = -1;
    if (t < 0 || H5Tget_class(t) != H5T_STRING) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: attribute '%s' of '%s' is not a string", fn, f->path, name, obj);
        goto done;
    }
    mt = H5Tcopy(H5T_C_S1);
    if (H5Tis_variable_str(t) > 0) { /* written by h5py and others */
        char *p = NULL;
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
            H5Aread(a, mt, &p) < 0) {
            s = blt_fail(BLT_EFORMAT, "%s: %s: cannot read attribute '%s' of '%s' (%s)", fn, f->path, name, obj, blt_h5u_msg());
            goto done;
        }
        *value = blt_h5u_dupstr(p ? p : "");
        if (p) H5free_memory(p);
    } else {
        size_t n = H5Tget_size(t);
        if (n == 0 || (long long)n > f->fsize) {
            s = blt_fail(BLT_EFORMAT, "%s: %s: attribute '%s' of '%s' declares %zu bytes (file has %lld)", fn, f->path,
                         name, obj, n, f->fsize);
            goto done;
        }
        char *buf = calloc(1, n + 1);
        if (!buf) {
            s = blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
            goto done;
        }
        if (mt < 0 || H5Tset_size(mt, n) < 0 || H5Tset_strpad(mt, H5Tget_strpad(t)) < 0 ||
            H5Tset_cset(mt, H5Tget_cset(t)) < 0 || H5Aread(a, mt, buf) < 0) {
            free(buf);
            s = blt_fail(BLT_EFORMAT, "%s: %s: cannot read attribute '%s' of '%s' (%s)", fn, f->path, name, obj, blt_h5u_msg());
            goto done;
        }
        buf[n] = 0;
        *value = buf;
    }
    if (!*value) s = blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
done:
    blt_h5u_close_id(mt);
    blt_h5u_close_id(t);
    H5Aclose(a);
    return s;
}

typedef struct {
    char **names;
    char *kinds;
    int n, cap;
    int oom;
    long long limit;
} name_list;

static int list_add(name_list *l, const char *name, char kind)
{
    if (l->n >= l->limit) return -1;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **nn = realloc(l->names, cap * sizeof *nn);
        if (!nn) { l->oom = 1; return -1; }
        l->names = nn;
        char *nk = realloc(l->kinds, cap);
        if (!nk) { l->oom = 1; return -1; }
        l->kinds = nk;
        l->cap = cap;
    }
    if (!(l->names[l->n] = blt_h5u_dupstr(name))) { l->oom = 1; return -1; }
    l->kinds[l->n++] = kind;
    return 0;
}

static void list_free(name_list *l)
{
    blt_h5_free_names(l->names, l->n);
    free(l->kinds);
}

/* An empty list for f: a file being read bounds how many names it can hold. */
static name_list list_new(const blt_h5 *f)
{
    name_list l = {0};
    l.limit = f->writing ? INT32_MAX : (f->fsize < INT32_MAX ? f->fsize : INT32_MAX);
    return l;
}

/* The error for an iteration into l that failed while listing `what` obj. */
static blt_status list_fail(const name_list *l, const char *fn, const blt_h5 *f, const char *what, const char *obj)
{
    return l->oom ? blt_fail(BLT_ENOMEM, "%s: out of memory", fn)
                  : blt_fail(BLT_EFORMAT, "%s: %s: cannot list %s'%s' (%s)", fn, f->path, what, obj, blt_h5u_msg());
}

void blt_h5_free_names(char **names, int n)
{
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)loc; (void)info;
    return list_add(data, name, 'a') < 0 ? -1 : 0;
}

blt_status blt_h5_attr_names(blt_h5 *f, const char *obj, char ***names, int *n)
{
    const char *fn = "h5_attrs";
    *names = NULL;
    *n = 0;
    blt_h5u_init();
    hid_t o;
    BLT_TRY(blt_h5i_need_open(f, fn));
    if (!f->writing) {
        BLT_TRY(blt_h5i_check_path(fn, f, obj, 1));
        int t = blt_h5i_object_type(f, fn, obj);
        if (t == -2) return BLT_EFORMAT;
        if (t == H5I_BADID) return blt_fail(BLT_EFORMAT, "%s: %s: no object '%s'", fn, f->path, obj);
    }
    BLT_TRY(blt_h5i_open_obj(f, fn, obj, &o));
    name_list l = list_new(f);
    hsize_t idx = 0;
    blt_status s = BLT_OK;
    if (H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &l) < 0)
        s = list_fail(&l, fn, f, "the attributes of ", obj);
    H5Oclose(o);
    if (s != BLT_OK) {
        list_free(&l);
        return s;
    }
    free(l.kinds);
    *names = l.names;
    *n = l.n;
    return BLT_OK;
}

/* Records a link's name only: objects are opened after the iteration, never
 * inside it. */
static herr_t link_cb(hid_t g, const char *name, const BLT_LINFO *info, void *data)
{
    (void)g;
    return list_add(data, name, info->type == H5L_TYPE_HARD ? 'h' : '?') < 0 ? -1 : 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* Sorts l by name, keeping each kind with its name. */
static int sort_list(name_list *l)
{
    if (l->n < 2) return 0;
    char ***idx = malloc((size_t)l->n * sizeof *idx);
    char **nn = malloc((size_t)l->n * sizeof *nn);
    char *nk = malloc((size_t)l->n);
    if (!idx || !nn || !nk) {
        free(idx); free(nn); free(nk);
        return -1;
    }
    for (int i = 0; i < l->n; i++) idx[i] = &l->names[i];
    qsort(idx, (size_t)l->n, sizeof *idx, by_name);
    for (int i = 0; i < l->n; i++) {
        size_t j = (size_t)(idx[i] - l->names);
        nn[i] = l->names[j];
        nk[i] = l->kinds[j];
    }
    memcpy(l->names, nn, (size_t)l->n * sizeof *nn);
    memcpy(l->kinds, nk, (size_t)l->n);
    free(idx); free(nn); free(nk);
    return 0;
}

blt_status blt_h5_list(blt_h5 *f, const char *group, char ***names, char **kinds, int *n, int *exists)
{
    const char *fn = "h5_list";
    *names = NULL;
    if (kinds) *kinds = NULL;
    *n = 0;
    if (exists) *exists = 0;
    blt_h5u_init();
    BLT_TRY(blt_h5i_need_open(f, fn));
    BLT_TRY(blt_h5i_check_path(fn, f, group, 1));
    int t = blt_h5i_object_type(f, fn, group);
    if (t == -2) return BLT_EFORMAT;
    if (t == H5I_BADID) return BLT_OK;
    if (t != H5I_GROUP) return blt_fail(BLT_EFORMAT, "%s: %s: '%s' is not a group", fn, f->path, group);
    if (exists) *exists = 1;
    hid_t g = H5Gopen2(f->file, group, H5P_DEFAULT);
    if (g < 0) return blt_fail(BLT_EFORMAT, "%s: %s: cannot open group '%s' (%s)", fn, f->path, group, blt_h5u_msg());
    name_list l = list_new(f);
    hsize_t idx = 0;
    blt_status s = BLT_OK;
    /* native order: on a damaged group, HDF5 1.10's sorted iteration frees a
     * half-built link table (a double free in H5G__link_release_table); the
     * names are sorted here instead */
    if (blt_Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, link_cb, &l) < 0)
        s = list_fail(&l, fn, f, "group ", group);
    for (int i = 0; s == BLT_OK && i < l.n; i++) {
        if (l.kinds[i] != 'h') continue;
        char kind = '?';
        hid_t o = H5Oopen(g, l.names[i], H5P_DEFAULT);
        if (o >= 0) {
            H5I_type_t ot = H5Iget_type(o);
            kind = ot == H5I_DATASET ? 'd' : ot == H5I_GROUP ? 'g' : '?';
            H5Oclose(o);
        } else {
            H5Eclear2(H5E_DEFAULT);
        }
        l.kinds[i] = kind;
    }
    if (s == BLT_OK && sort_list(&l) < 0) s = blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
    H5Gclose(g);
    if (s != BLT_OK) {
        list_free(&l);
        return s;
    }
    *names = l.names;
    *n = l.n;
    if (kinds) *kinds = l.kinds;
    else free(l.kinds);
    return BLT_OK;
}

blt_status blt_h5_exists(blt_h5 *f, const char *dset, int *exists)
{
    *exists = 0;
    blt_h5u_init();
    BLT_TRY(blt_h5i_need_open(f, "h5_exists"));
    BLT_TRY(blt_h5i_check_path("h5_exists", f, dset, 1));
    int t = blt_h5i_object_type(f, "h5_exists", dset);
    if (t == -2) return BLT_EFORMAT;
    *exists = t == H5I_DATASET;
    return BLT_OK;
}

#define CHUNK_FLOOR ((unsigned long long)1 << 20) /* a chunk may exceed a small dataset up to this */
#define CHUNK_MAX ((unsigned long long)1 << 26)   /* and never this (64 MiB) */

/* HDF5 allocates a whole chunk to read any part of it (and inflates it whole), so
 * a crafted chunk far larger than its dataset costs time and memory for nothing:
 * 32 floats in a 2^28-element gzip chunk took 5 s and 1 GB. A chunk may hold at
 * most max(the dataset, 1 MiB) and never 64 MiB. Filters: only deflate, shuffle
 * and fletcher32 (what h5py users write); anything else (szip, n-bit,
 * scale-offset, a plugin) is refused rather than decoded. */
static blt_status check_chunks(const blt_h5 *f, const char *fn, const char *dset, hid_t dcpl, int nd, size_t esize,
                               unsigned long long dset_bytes)
{
    hsize_t cd[BLT_H5_MAX_DIMS + 1];
    int cn = H5Pget_chunk(dcpl, BLT_H5_MAX_DIMS + 1, cd);
    if (cn != nd || nd == 0)
        return blt_fail(BLT_EFORMAT, "%s: %s: dataset %s has chunks of rank %d for rank %d", fn, f->path, dset, cn, nd);
    unsigned long long cb = esize, lim = dset_bytes > CHUNK_FLOOR ? dset_bytes : CHUNK_FLOOR;
    if (lim > CHUNK_MAX) lim = CHUNK_MAX;
    for (int i = 0; i < nd; i++) {
        if (cd[i] == 0 || cb > lim / cd[i] + 1) {
            cb = lim + 1;
            break;
        }
        cb *= cd[i];
    }
    if (cb > lim)
        return blt_fail(BLT_EFORMAT, "%s: %s: dataset %s has chunks of more than %llu bytes (the dataset holds %llu): "
                        "refused", fn, f->path, dset, lim, dset_bytes);
    int nf = H5Pget_nfilters(dcpl);
    if (nf < 0) return blt_fail(BLT_EFORMAT, "%s: %s: cannot read the filters of %s (%s)", fn, f->path, dset, blt_h5u_msg());
    for (int i = 0; i < nf; i++) {
        unsigned flags, cfg;
        size_t ne = 0;
        char name[64] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ne, NULL, sizeof name, name, &cfg);
        if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32)
            return blt_fail(BLT_EFORMAT, "%s: %s: dataset %s uses filter %d (%s): refused (allowed: deflate, shuffle, "
                            "fletcher32)", fn, f->path, dset, (int)id, name[0] ? name : "unknown");
    }
    return BLT_OK;
}

/* Opens dset after checking that it is a plain dataset of at most
 * BLT_H5_MAX_DIMS dimensions whose declared size fits in the file. */
static blt_status open_dset(blt_h5 *f, const char *fn, const char *dset, hid_t *d, blt_h5_type *type, int *ndim,
                            int64_t *shape, int64_t *numel)
{
    *d = -1;
    BLT_TRY(blt_h5i_need_open(f, fn));
    BLT_TRY(blt_h5i_check_path(fn, f, dset, 0));
    int t = blt_h5i_object_type(f, fn, dset);
    if (t == -2) return BLT_EFORMAT;
    if (t == H5I_BADID) return blt_fail(BLT_EFORMAT, "%s: %s: missing dataset %s", fn, f->path, dset);
    if (t != H5I_DATASET) return blt_fail(BLT_EFORMAT, "%s: %s: %s is not a dataset", fn, f->path, dset);
    hid_t id = H5Dopen2(f->file, dset, H5P_DEFAULT);
    if (id < 0) return blt_fail(BLT_EFORMAT, "%s: %s: cannot open dataset %s (%s)", fn, f->path, dset, blt_h5u_msg());
    blt_status s = BLT_OK;
    hid_t ty = -1, sp = -1, dcpl = -1;
    dcpl = H5Dget_create_plist(id);
    H5D_layout_t lay = dcpl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(dcpl);
    if (lay != H5D_CONTIGUOUS && lay != H5D_CHUNKED && lay != H5D_COMPACT) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: dataset %s has an unsupported (virtual or unknown) layout", fn, f->path, dset);
        goto done;
    }
    if (H5Pget_external_count(dcpl) != 0) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: dataset %s keeps its data in external files (refused)", fn, f->path, dset);
        goto done;
    }
    ty = H5Dget_type(id);
    sp = H5Dget_space(id);
    if (ty < 0 || sp < 0) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: cannot read the type or shape of %s (%s)", fn, f->path, dset, blt_h5u_msg());
        goto done;
    }
    *type = classify(ty);
    H5S_class_t sc = H5Sget_simple_extent_type(sp);
    int nd = sc == H5S_SCALAR ? 0 : sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd < 0 || nd > BLT_H5_MAX_DIMS) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: dataset %s has rank %d (supported: 0..%d)", fn, f->path, dset, nd,
                     BLT_H5_MAX_DIMS);
        goto done;
    }
    hsize_t dims[BLT_H5_MAX_DIMS] = {0};
    if (nd > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: cannot read the shape of %s (%s)", fn, f->path, dset, blt_h5u_msg());
        goto done;
    }
    size_t esize = H5Tget_size(ty);
    if (esize == 0) esize = 1;
    /* declared bytes, saturating; compared with what is on disk */
    unsigned long long bytes = esize, lim = (unsigned long long)f->fsize;
    for (int i = 0; i < nd; i++) {
        shape[i] = dims[i] > (hsize_t)INT64_MAX ? INT64_MAX : (int64_t)dims[i];
        if (dims[i] && bytes > lim / dims[i] + 1) bytes = lim + 1;
        else bytes *= dims[i];
    }
    *ndim = nd;
    if (!f->writing && bytes > lim) {
        char sb[200];
        s = blt_fail(BLT_EFORMAT, "%s: %s: dataset %s declares shape %s of %s, more bytes than the whole file (%lld): refused",
                     fn, f->path, dset, blt_fmt_shape(sb, sizeof sb, nd, shape), blt_h5_type_name(*type), f->fsize);
        goto done;
    }
    if (lay == H5D_CHUNKED) {
        s = check_chunks(f, fn, dset, dcpl, nd, esize, bytes);
        if (s != BLT_OK) goto done;
    }
    *numel = blt_h5i_numel(nd, shape);
done:
    blt_h5u_close_id(dcpl);
    blt_h5u_close_id(ty);
    blt_h5u_close_id(sp);
    if (s != BLT_OK) H5Dclose(id);
    else *d = id;
    return s;
}

blt_status blt_h5_info(blt_h5 *f, const char *dset, blt_h5_type *type, int *ndim, int64_t *shape)
{
    blt_h5u_init();
    hid_t d;
    int64_t numel;
    BLT_TRY(open_dset(f, "h5_info", dset, &d, type, ndim, shape, &numel));
    H5Dclose(d);
    return BLT_OK;
}

blt_status blt_h5_read(blt_h5 *f, const char *dset, blt_h5_type type, int ndim, const int64_t *shape, void *data,
                       size_t cap, int check_finite)
{
    const char *fn = "h5_read";
    blt_h5u_init();
    hid_t d;
    blt_h5_type ft;
    int nd;
    int64_t fshape[BLT_H5_MAX_DIMS], numel;
    BLT_TRY(open_dset(f, fn, dset, &d, &ft, &nd, fshape, &numel));
    blt_status s = BLT_OK;
    char a[200], b[200];
    if (blt_h5i_mem_type(type) < 0) {
        s = blt_fail(BLT_EINVAL, "%s: cannot read into type %s", fn, blt_h5_type_name(type));
        goto done;
    }
    if (ft != type) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: dataset %s is %s, expected %s", fn, f->path, dset, blt_h5_type_name(ft),
                     blt_h5_type_name(type));
        goto done;
    }
    int same = nd == ndim;
    for (int i = 0; same && i < nd; i++) same = fshape[i] == shape[i];
    if (!same) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: dataset %s has shape %s in the file, expected %s", fn, f->path, dset,
                     blt_fmt_shape(a, sizeof a, nd, fshape), blt_fmt_shape(b, sizeof b, ndim, shape));
        goto done;
    }
    size_t need = (size_t)numel * blt_h5_type_size(type);
    if (need > cap) {
        s = blt_fail(BLT_EINVAL, "%s: %s: dataset %s needs %zu bytes, buffer has %zu", fn, f->path, dset, need, cap);
        goto done;
    }
    if (numel > 0 && H5Dread(d, blt_h5i_mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: cannot read dataset %s (%s)", fn, f->path, dset, blt_h5u_msg());
        goto done;
    }
    if (check_finite && (type == BLT_H5_F32 || type == BLT_H5_F64)) {
        for (int64_t i = 0; i < numel; i++) {
            double v = type == BLT_H5_F32 ? (double)((const float *)data)[i] : ((const double *)data)[i];
            if (!isfinite(v)) {
                s = blt_fail(BLT_EFORMAT, "%s: %s: dataset %s %s holds a non-finite value (%s) at element %lld", fn,
                             f->path, dset, blt_fmt_shape(a, sizeof a, nd, fshape), isnan(v) ? "nan" : v > 0 ? "inf" : "-inf",
                             (long long)i);
                break;
            }
        }
    }
done:
    H5Dclose(d);
    return s;
}
