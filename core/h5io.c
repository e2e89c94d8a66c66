/* HDF5 checkpoints (see h5io.h): file access, create/commit/abort, open/close and
 * writing. Reading attributes, listings and datasets is h5read.c, the checksum
 * header h5seal.c; the metrics writer is h5metrics.c, the helpers both use h5util.c.
 *
 * HDF5's own error printing is switched off; when a call fails, the innermost
 * message of its error stack is put into ours, after the function, the file and
 * the dataset. Files are written with the 1.8 file format (low library bound
 * H5F_LIBVER_V18): its superblock, object headers and attribute storage carry
 * checksums, which turns most corruption into a clean "checksum" error instead
 * of a parse of garbage. Only hard links are followed when reading: a soft or
 * external link, an external-storage or virtual dataset is refused, so a hostile
 * file cannot make us read other files. */
#include "h5io_impl.h"
#include "h5seal.h"
#include "safefile.h"
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- types ---- */

const char *blt_h5_type_name(blt_h5_type t)
{
    static const char *names[] = {"float32", "float64", "int32", "int64", "uint64", "string", "other"};
    return (unsigned)t <= BLT_H5_OTHER ? names[t] : "?";
}

size_t blt_h5_type_size(blt_h5_type t)
{
    switch (t) {
    case BLT_H5_F32: case BLT_H5_I32: return 4;
    case BLT_H5_F64: case BLT_H5_I64: case BLT_H5_U64: return 8;
    default: return 0;
    }
}

static hid_t file_type(blt_h5_type t)
{
    switch (t) {
    case BLT_H5_F32: return H5T_IEEE_F32LE;
    case BLT_H5_F64: return H5T_IEEE_F64LE;
    case BLT_H5_I32: return H5T_STD_I32LE;
    case BLT_H5_I64: return H5T_STD_I64LE;
    case BLT_H5_U64: return H5T_STD_U64LE;
    default: return -1;
    }
}

hid_t blt_h5i_mem_type(blt_h5_type t)
{
    switch (t) {
    case BLT_H5_F32: return H5T_NATIVE_FLOAT;
    case BLT_H5_F64: return H5T_NATIVE_DOUBLE;
    case BLT_H5_I32: return H5T_NATIVE_INT32;
    case BLT_H5_I64: return H5T_NATIVE_INT64;
    case BLT_H5_U64: return H5T_NATIVE_UINT64;
    default: return -1;
    }
}

/* ---- file access ---- */

static void free_handle(blt_h5 *f)
{
    if (!f) return;
    free(f->im.img);
    free(f->path);
    free(f->tmp);
    free(f);
}

const char *blt_h5_tmp_path(const blt_h5 *f) { return f && f->tmp ? f->tmp : ""; }
const char *blt_h5_path(const blt_h5 *f) { return f && f->path ? f->path : ""; }

/* An absolute path of non-empty components, none of them "." or "..". */
blt_status blt_h5i_check_path(const char *fn, const blt_h5 *f, const char *p, int allow_root)
{
    if (!p || p[0] != '/')
        return blt_fail(BLT_EINVAL, "%s: %s: object path '%s' must start with '/'", fn, f->path, p ? p : "(null)");
    size_t n = strlen(p);
    if (n >= BLT_H5U_PATH_CAP) return blt_fail(BLT_EINVAL, "%s: %s: object path of %zu bytes is too long", fn, f->path, n);
    if (n == 1) {
        if (allow_root) return BLT_OK;
        return blt_fail(BLT_EINVAL, "%s: %s: '/' is not a dataset path", fn, f->path);
    }
    const char *c = p + 1;
    while (1) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return blt_fail(BLT_EINVAL, "%s: %s: object path '%s' has an empty, '.' or '..' component", fn,
                            f->path, p);
        if (!e) break;
        c = e + 1;
    }
    return BLT_OK;
}

/* Whether every link along p exists; only hard links are accepted.
 * Returns 1 (exists), 0 (missing) or -1 (error, message set). */
static int walk_path(const blt_h5 *f, const char *fn, const char *p)
{
    if (!strcmp(p, "/")) return 1;
    char buf[BLT_H5U_PATH_CAP];
    snprintf(buf, sizeof buf, "%s", p);
    size_t n = strlen(buf);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char save = buf[i];
        buf[i] = 0;
        htri_t e = H5Lexists(f->file, buf, H5P_DEFAULT);
        if (e < 0) {
            blt_fail(BLT_EFORMAT, "%s: %s: cannot look up '%s' (%s)", fn, f->path, buf, blt_h5u_msg());
            return -1;
        }
        if (e == 0) return 0;
        BLT_LINFO li;
        if (blt_Lget_info(f->file, buf, &li, H5P_DEFAULT) < 0) {
            blt_fail(BLT_EFORMAT, "%s: %s: cannot read link '%s' (%s)", fn, f->path, buf, blt_h5u_msg());
            return -1;
        }
        if (li.type != H5L_TYPE_HARD) {
            blt_fail(BLT_EFORMAT, "%s: %s: '%s' is a soft or external link (not followed)", fn, f->path, buf);
            return -1;
        }
        buf[i] = save;
    }
    return 1;
}

/* Type of the object at p: H5I_GROUP, H5I_DATASET, ..., or H5I_BADID when
 * missing; -2 on error. */
int blt_h5i_object_type(const blt_h5 *f, const char *fn, const char *p)
{
    int w = walk_path(f, fn, p);
    if (w < 0) return -2;
    if (w == 0) return H5I_BADID;
    hid_t o = H5Oopen(f->file, p, H5P_DEFAULT);
    if (o < 0) {
        blt_fail(BLT_EFORMAT, "%s: %s: cannot open object '%s' (%s)", fn, f->path, p, blt_h5u_msg());
        return -2;
    }
    int t = H5Iget_type(o);
    H5Oclose(o);
    return t;
}

/* Creates the missing groups of p (all of p when last, else up to its parent). */
static blt_status make_groups(blt_h5 *f, const char *fn, const char *p, int last)
{
    char buf[BLT_H5U_PATH_CAP];
    snprintf(buf, sizeof buf, "%s", p);
    size_t n = strlen(buf);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && !(buf[i] == 0 && last)) continue;
        char save = buf[i];
        buf[i] = 0;
        int t = blt_h5i_object_type(f, fn, buf);
        if (t == -2) return BLT_EFORMAT;
        if (t == H5I_BADID) {
            hid_t g = H5Gcreate2(f->file, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) return blt_fail(BLT_EIO, "%s: %s: cannot create group '%s' (%s)", fn, f->path, buf, blt_h5u_msg());
            H5Gclose(g);
        } else if (t != H5I_GROUP && save == '/') {
            return blt_fail(BLT_EINVAL, "%s: %s: '%s' exists and is not a group", fn, f->path, buf);
        }
        buf[i] = save;
    }
    return BLT_OK;
}


/* ---- writing ---- */

blt_status blt_h5_create(blt_h5 **out, const char *path, size_t size_hint)
{
    *out = NULL;
    blt_h5u_init();
    if (!path || !path[0]) return blt_fail(BLT_EINVAL, "h5_create: empty path");
    blt_h5 *f = calloc(1, sizeof *f);
    if (!f) return blt_fail(BLT_ENOMEM, "h5_create: out of memory");
    f->file = -1;
    f->fd = -1;
    f->writing = 1;
    f->path = blt_h5u_dupstr(path);
    if (!f->path) {
        free_handle(f);
        return blt_fail(BLT_ENOMEM, "h5_create: out of memory");
    }
    /* the temporary file now, so that a bad folder or permission shows at once; a new
     * file (O_EXCL, no symbolic link followed), renamed over path at commit */
    f->fd = blt_tmp_create(path, &f->tmp);
    if (f->fd < 0) {
        blt_status s = blt_fail(BLT_EIO, "h5_create: %s: cannot create a temporary file beside it (%s)", path,
                                strerror(errno));
        free_handle(f);
        return s;
    }
    /* HDF5 builds the file in memory (core driver, no backing store) and never
     * touches the disk itself: a failing write (disk full) then stays our clean
     * error instead of a half-closed HDF5 file (HDF5 1.10 crashes at exit on one). */
    size_t inc = size_hint + ((size_t)1 << 20);
    if (inc < ((size_t)1 << 20) || inc > ((size_t)1 << 40)) inc = (size_t)1 << 20;
    hid_t fapl = blt_h5u_image_fapl(&f->im, NULL, 0, inc);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    /* the user block is where commit puts the checksum header */
    if (fapl >= 0 && fcpl >= 0 && H5Pset_userblock(fcpl, BLT_H5S_UB_SIZE) >= 0)
        f->file = H5Fcreate(f->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    blt_h5u_close_id(fcpl);
    blt_h5u_close_id(fapl);
    if (f->file < 0) {
        blt_status s = blt_fail(BLT_EIO, "h5_create: %s: cannot create an HDF5 file in memory (%s)", path, blt_h5u_msg());
        blt_h5_abort(f);
        return s;
    }
    *out = f;
    return BLT_OK;
}

static blt_status need_writer(const blt_h5 *f, const char *fn)
{
    if (!f || f->file < 0) return blt_fail(BLT_ESTATE, "%s: the file is closed", fn);
    if (!f->writing) return blt_fail(BLT_ESTATE, "%s: %s is open for reading", fn, f->path);
    return BLT_OK;
}

blt_status blt_h5i_need_open(const blt_h5 *f, const char *fn)
{
    if (!f || f->file < 0) return blt_fail(BLT_ESTATE, "%s: the file is closed", fn);
    return BLT_OK;
}

/* Opens obj for attributes; creates its groups when writing. */
blt_status blt_h5i_open_obj(blt_h5 *f, const char *fn, const char *obj, hid_t *o)
{
    *o = -1;
    BLT_TRY(blt_h5i_check_path(fn, f, obj, 1));
    int t = blt_h5i_object_type(f, fn, obj);
    if (t == -2) return BLT_EFORMAT;
    if (t == H5I_BADID) {
        if (!f->writing) return blt_fail(BLT_EFORMAT, "%s: %s: no object '%s'", fn, f->path, obj);
        BLT_TRY(make_groups(f, fn, obj, 1));
    }
    *o = H5Oopen(f->file, obj, H5P_DEFAULT);
    if (*o < 0) return blt_fail(BLT_EFORMAT, "%s: %s: cannot open '%s' (%s)", fn, f->path, obj, blt_h5u_msg());
    return BLT_OK;
}

static blt_status write_attr(blt_h5 *f, const char *fn, const char *obj, const char *name, hid_t ftype,
                             hid_t mtype, const void *value)
{
    BLT_TRY(need_writer(f, fn));
    if (!name || !name[0]) return blt_fail(BLT_EINVAL, "%s: %s: empty attribute name", fn, f->path);
    hid_t o;
    BLT_TRY(blt_h5i_open_obj(f, fn, obj, &o));
    blt_status s = BLT_OK;
    hid_t sp = -1, a = -1;
    htri_t ex = H5Aexists(o, name);
    if (ex > 0 && H5Adelete(o, name) < 0) ex = -1;
    if (ex < 0) {
        s = blt_fail(BLT_EIO, "%s: %s: cannot replace attribute '%s' of '%s' (%s)", fn, f->path, name, obj, blt_h5u_msg());
        goto done;
    }
    sp = H5Screate(H5S_SCALAR);
    a = sp < 0 ? -1 : H5Acreate2(o, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mtype, value) < 0)
        s = blt_fail(BLT_EIO, "%s: %s: cannot write attribute '%s' of '%s' (%s)", fn, f->path, name, obj, blt_h5u_msg());
done:
    blt_h5u_close_id(a);
    blt_h5u_close_id(sp);
    H5Oclose(o);
    return s;
}

blt_status blt_h5_set_attr_str(blt_h5 *f, const char *obj, const char *name, const char *value)
{
    blt_h5u_init();
    BLT_TRY(need_writer(f, "h5_set_attr"));
    if (!value) return blt_fail(BLT_EINVAL, "h5_set_attr: %s: NULL value for '%s'", f->path, name ? name : "?");
    /* fixed-length, NUL-terminated UTF-8: stored inside the (checksummed) object header */
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(value) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        blt_h5u_close_id(t);
        return blt_fail(BLT_EIO, "h5_set_attr: %s: cannot make a string type (%s)", f->path, blt_h5u_msg());
    }
    blt_status s = write_attr(f, "h5_set_attr", obj, name, t, t, value);
    H5Tclose(t);
    return s;
}

blt_status blt_h5_set_attr_int(blt_h5 *f, const char *obj, const char *name, int64_t value)
{
    blt_h5u_init();
    return write_attr(f, "h5_set_attr", obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

/* numel of a shape, or -1 on a negative size or overflow past 2^62 */
int64_t blt_h5i_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > (INT64_C(1) << 62) / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

blt_status blt_h5_write(blt_h5 *f, const char *dset, blt_h5_type type, int ndim, const int64_t *shape,
                        const void *data)
{
    const char *fn = "h5_write";
    blt_h5u_init();
    BLT_TRY(need_writer(f, fn));
    BLT_TRY(blt_h5i_check_path(fn, f, dset, 0));
    if (file_type(type) < 0)
        return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: cannot write type %s", fn, f->path, dset, blt_h5_type_name(type));
    if (ndim < 0 || ndim > BLT_H5_MAX_DIMS)
        return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: rank %d out of 0..%d", fn, f->path, dset, ndim, BLT_H5_MAX_DIMS);
    int64_t numel = blt_h5i_numel(ndim, shape);
    if (numel < 0) {
        char sb[160];
        return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: bad shape %s", fn, f->path, dset,
                        blt_fmt_shape(sb, sizeof sb, ndim, shape));
    }
    if (numel > 0 && !data) return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: no data", fn, f->path, dset);
    int t = blt_h5i_object_type(f, fn, dset);
    if (t == -2) return BLT_EFORMAT;
    if (t != H5I_BADID) return blt_fail(BLT_EINVAL, "%s: %s: '%s' was already written", fn, f->path, dset);
    BLT_TRY(make_groups(f, fn, dset, 0));

    hsize_t dims[BLT_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t sp = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    hid_t d = sp < 0 ? -1 : H5Dcreate2(f->file, dset, file_type(type), sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    blt_status s = BLT_OK;
    if (d < 0) s = blt_fail(BLT_EIO, "%s: %s: cannot create dataset %s (%s)", fn, f->path, dset, blt_h5u_msg());
    else if (numel > 0 && H5Dwrite(d, blt_h5i_mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        s = blt_fail(BLT_EIO, "%s: %s: cannot write dataset %s (%s)", fn, f->path, dset, blt_h5u_msg());
    blt_h5u_close_id(d);
    blt_h5u_close_id(sp);
    return s;
}

blt_status blt_h5_commit(blt_h5 *f)
{
    const char *fn = "h5_commit";
    blt_h5u_init();
    blt_status s = need_writer(f, fn);
    if (s != BLT_OK) {
        blt_h5_abort(f);
        return s;
    }
    /* HDF5 writes its last metadata into the image as it closes; we keep the image,
     * whose length is the superblock's end of file (after the user block) */
    hid_t file = f->file;
    f->file = -1;
    if (blt_h5u_image_close(&f->im, file) < 0) {
        s = blt_fail(BLT_EIO, "%s: %s: cannot finish the file (%s)", fn, f->path, blt_h5u_msg());
        blt_h5_abort(f);
        return s;
    }
    if (!f->im.eof_read || f->im.len < BLT_H5S_UB_SIZE + 48) {
        s = blt_fail(BLT_EIO, "%s: %s: unexpected in-memory HDF5 image (no superblock v2 or v3 after the user "
                     "block in %zu bytes)", fn, f->path, f->im.cap);
        blt_h5_abort(f);
        return s;
    }
    uint64_t size = f->im.len;
    blt_h5s_seal(f->im.img, size);
    H5Eclear2(H5E_DEFAULT);
    /* write, flush to the disk, close, rename over the target */
    const char *step = "write";
    int ok = blt_write_all(f->fd, f->im.img, (size_t)size) == 0;
    free(f->im.img);
    f->im.img = NULL;
    if (ok) { step = "fsync"; ok = fsync(f->fd) == 0; }
    if (ok) { step = "close"; ok = close(f->fd) == 0; f->fd = -1; }
    if (ok) { step = "rename"; ok = rename(f->tmp, f->path) == 0; }
    if (!ok) {
        int err = errno;
        s = blt_fail(BLT_EIO, "%s: %s: %s of %s failed (%s); the previous file is untouched", fn, f->path, step,
                     f->tmp, strerror(err));
        blt_h5_abort(f);
        return s;
    }
    blt_fsync_dir(f->path); /* make the rename itself durable */
    free_handle(f);
    return BLT_OK;
}

void blt_h5_abort(blt_h5 *f)
{
    if (!f) return;
    if (f->file >= 0) {
        H5Fclose(f->file);
        H5Eclear2(H5E_DEFAULT);
    }
    if (f->writing && f->fd >= 0) close(f->fd);
    if (f->writing && f->tmp) unlink(f->tmp);
    free_handle(f);
}

/* ---- reading ---- */

blt_status blt_h5_open(blt_h5 **out, const char *path, int flags)
{
    const char *fn = "h5_open";
    *out = NULL;
    blt_h5u_init();
    if (!path || !path[0]) return blt_fail(BLT_EINVAL, "%s: empty path", fn);
    /* O_NONBLOCK: a FIFO would block open() until a writer came; fstat below refuses it */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return blt_fail(BLT_EIO, "%s: %s: %s", fn, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        blt_status s = blt_fail(BLT_EIO, "%s: %s: not a regular file", fn, path);
        close(fd);
        return s;
    }
    int sealed = 0;
    blt_status s = blt_h5s_verify(fn, path, fd, (long long)st.st_size, &sealed);
    if (s == BLT_OK && !sealed && (flags & BLT_H5_REQUIRE_CHECKSUM))
        s = blt_fail(BLT_EFORMAT, "%s: %s: has no checksum header (written by an earlier version of this "
                     "framework or by another tool), so damage cannot be detected before HDF5 parses it", fn, path);
    blt_h5 *f = s == BLT_OK ? calloc(1, sizeof *f) : NULL;
    if (s == BLT_OK && (!f || !(f->path = blt_h5u_dupstr(path)))) s = blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
    if (s != BLT_OK) {
        free_handle(f);
        close(fd);
        return s;
    }
    f->fd = -1;
    f->sealed = sealed;
    f->fsize = (long long)st.st_size;
    /* HDF5 opens the very file that was checked, even if path has been replaced since */
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    const char *hpath = access(proc, R_OK) == 0 ? proc : path;
    hid_t fapl = blt_h5u_fapl(1);
    f->file = H5Fopen(hpath, H5F_ACC_RDONLY, fapl);
    blt_h5u_close_id(fapl);
    close(fd);
    if (f->file < 0) {
        s = blt_fail(BLT_EFORMAT, "%s: %s: not a readable HDF5 file (%s)", fn, path, blt_h5u_msg());
        free_handle(f);
        return s;
    }
    *out = f;
    return BLT_OK;
}

int blt_h5_sealed(const blt_h5 *f) { return f ? f->sealed : 0; }

void blt_h5_close(blt_h5 *f)
{
    if (!f) return;
    if (f->writing) {
        blt_h5_abort(f);
        return;
    }
    if (f->file >= 0) {
        H5Fclose(f->file);
        H5Eclear2(H5E_DEFAULT);
    }
    free_handle(f);
}
