/* HDF5 checkpoints (see h5io.h); the metrics writer is h5metrics.c, the helpers both
 * use are h5util.c.
 *
 * HDF5's own error printing is switched off; when a call fails, the innermost
 * message of its error stack is put into ours, after the function, the file and
 * the dataset. Files are written with the 1.8 file format (low library bound
 * H5F_LIBVER_V18): its superblock, object headers and attribute storage carry
 * checksums, which turns most corruption into a clean "checksum" error instead
 * of a parse of garbage. Only hard links are followed when reading: a soft or
 * external link, an external-storage or virtual dataset is refused, so a hostile
 * file cannot make us read other files.
 *
 * Whole-file checksum: every file written by blt_h5_create starts with a 512-byte
 * HDF5 user block (HDF5 and h5py skip it) holding a header: magic "BLT-CKPT",
 * version, user block size, file length and the CRC-32 (zlib's) of the whole file
 * with the CRC field read as zeros. blt_h5_open checks it before HDF5 sees a byte
 * of the file: HDF5's metadata checksums do not cover raw data, v1 B-trees, local
 * or global heaps, and HDF5 1.10 crashes on some damaged files (a bad free in
 * H5Literate on a zeroed fractal heap), so damage must be caught before parsing. */
#include "h5io.h"
#include "h5util.h"
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

#if H5_VERSION_GE(1, 12, 0)
#define BLT_LINFO H5L_info2_t
#define blt_Lget_info H5Lget_info2
#define blt_Literate H5Literate2
#else
#define BLT_LINFO H5L_info_t
#define blt_Lget_info H5Lget_info
#define blt_Literate H5Literate
#endif

struct blt_h5 {
    hid_t file;
    int writing;
    char *path; /* the target (writer) or the file (reader) */
    char *tmp;  /* writer: the temporary file */
    int fd;     /* writer: the temporary file, open from create to commit */
    /* writer: HDF5's in-memory image, taken over when the file closes */
    void *img;
    size_t img_size;
    int keep_img;
    long long fsize; /* reader: bytes on disk, the bound for declared sizes */
    int sealed;      /* reader: the checksum header was present and matched */
};

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

static hid_t mem_type(blt_h5_type t)
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

/* ---- whole-file checksum (the user block header) ---- */

#define UB_SIZE 512
#define UB_MAGIC "BLT-CKPT"
#define UB_VERSION 1
#define UB_CRC_AT 24 /* offset of the CRC field, read as zeros when summing */

static const unsigned char hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

/* CRC-32 as zlib computes it (reflected 0xEDB88320), sliced by 8 so that a
 * multi-gigabyte checkpoint is summed at memory speed. zlib's, so that Python can
 * check a file with zlib.crc32 alone (docs/checkpoint-format.md). */
static uint32_t crc_tab[8][256];

static void crc_init(void)
{
    static int done;
    if (done) return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
    done = 1;
}

/* crc: the running value (0 to start) */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        lo ^= crc;
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
              crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
              crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t blt_h5_crc32(uint32_t crc, const void *data, size_t n)
{
    crc_init();
    return crc32_update(crc, data, n);
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Fills the user block of a finished image of len bytes. */
static void seal_image(unsigned char *im, uint64_t len)
{
    memset(im, 0, UB_SIZE);
    memcpy(im, UB_MAGIC, 8);
    put_le(im + 8, UB_VERSION, 4);
    put_le(im + 12, UB_SIZE, 4);
    put_le(im + 16, len, 8);
    put_le(im + UB_CRC_AT, blt_h5_crc32(0, im, (size_t)len), 4); /* the field is still zero here */
}

/* Checks the header and the checksum of the open file fd (size bytes) before
 * HDF5 reads it. *sealed: 1 when the file has a valid header and checksum,
 * 0 when it is a plain HDF5 file (signature at offset 0: an older checkpoint, or
 * one written by another tool). Anything else is an error: a damaged header must
 * not pass as "no header". */
static blt_status verify_file(const char *fn, const char *path, int fd, long long size, int *sealed)
{
    unsigned char ub[UB_SIZE];
    *sealed = 0;
    size_t got = 0;
    while (got < UB_SIZE) {
        ssize_t r = pread(fd, ub + got, UB_SIZE - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return blt_fail(BLT_EIO, "%s: %s: read failed (%s)", fn, path, strerror(errno));
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got >= 8 && !memcmp(ub, hdf5_sig, 8)) return BLT_OK; /* plain HDF5, no user block */
    if (got < 8 || memcmp(ub, UB_MAGIC, 8)) {
        return blt_fail(BLT_EFORMAT,
                        "%s: %s: not a readable HDF5 file (neither the BLT checksum header nor the HDF5 signature at "
                        "its start: damaged, or not HDF5)", fn, path);
    }
    if (got < UB_SIZE)
        return blt_fail(BLT_EFORMAT, "%s: %s: truncated: %lld bytes, shorter than its %d-byte checksum header", fn, path,
                        size, UB_SIZE);
    uint64_t ver = get_le(ub + 8, 4), ubs = get_le(ub + 12, 4), len = get_le(ub + 16, 8);
    if (ver != UB_VERSION || ubs != UB_SIZE)
        return blt_fail(BLT_EFORMAT, "%s: %s: checksum header version %llu (user block %llu bytes) is not %d (%d): "
                        "damaged, or written by a newer framework", fn, path, (unsigned long long)ver,
                        (unsigned long long)ubs, UB_VERSION, UB_SIZE);
    if (len != (uint64_t)size)
        return blt_fail(BLT_EFORMAT, "%s: %s: the file has %lld bytes, its header says %llu: %s", fn, path, size,
                        (unsigned long long)len, (uint64_t)size < len ? "truncated" : "damaged or appended to");
    uint32_t want = (uint32_t)get_le(ub + UB_CRC_AT, 4);
    memset(ub + UB_CRC_AT, 0, 4);
    uint32_t crc = blt_h5_crc32(0, ub, UB_SIZE);
    size_t cap = (size_t)1 << 20;
    unsigned char *buf = malloc(cap);
    if (!buf) return blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
    long long off = UB_SIZE;
    while (off < size) {
        size_t want_n = (size_t)(size - off < (long long)cap ? size - off : (long long)cap);
        ssize_t r = pread(fd, buf, want_n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            blt_status s = blt_fail(BLT_EIO, "%s: %s: read failed at byte %lld (%s)", fn, path, off,
                                    r < 0 ? strerror(errno) : "file shrank while being read");
            free(buf);
            return s;
        }
        crc = crc32_update(crc, buf, (size_t)r);
        off += r;
    }
    free(buf);
    if (crc != want)
        return blt_fail(BLT_EFORMAT, "%s: %s: checksum mismatch (CRC-32 %08x, header says %08x): the file is damaged",
                        fn, path, (unsigned)crc, (unsigned)want);
    *sealed = 1;
    return BLT_OK;
}

/* ---- file access ---- */

static void free_handle(blt_h5 *f)
{
    if (!f) return;
    free(f->img);
    free(f->path);
    free(f->tmp);
    free(f);
}

const char *blt_h5_tmp_path(const blt_h5 *f) { return f && f->tmp ? f->tmp : ""; }
const char *blt_h5_path(const blt_h5 *f) { return f && f->path ? f->path : ""; }

/* An absolute path of non-empty components, none of them "." or "..". */
static blt_status check_path(const char *fn, const blt_h5 *f, const char *p, int allow_root)
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
static int object_type(const blt_h5 *f, const char *fn, const char *p)
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
        int t = object_type(f, fn, buf);
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

/* Memory callbacks of the core driver: they let commit take over the final image
 * when HDF5 closes the file (H5Fget_file_image of 1.10 returns a superblock v2
 * whose checksum no longer matches, so the image is taken after the close). */
static void *img_malloc(size_t size, H5FD_file_image_op_t op, void *ud)
{
    (void)op;
    void *p = malloc(size);
    if (p) ((blt_h5 *)ud)->img_size = size;
    return p;
}
static void *img_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op, void *ud)
{
    (void)op; (void)ud;
    return memcpy(dst, src, size);
}
static void *img_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *ud)
{
    (void)op;
    void *p = realloc(ptr, size);
    if (p) ((blt_h5 *)ud)->img_size = size;
    return p;
}
static herr_t img_free(void *ptr, H5FD_file_image_op_t op, void *ud)
{
    blt_h5 *f = ud;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && f->keep_img) f->img = ptr;
    else free(ptr);
    return 0;
}
static void *img_udata_copy(void *ud) { return ud; }
static herr_t img_udata_free(void *ud) { (void)ud; return 0; }

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
    hid_t fapl = blt_h5u_fapl(1);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5FD_file_image_callbacks_t cb = {img_malloc, img_memcpy, img_realloc, img_free, img_udata_copy,
                                      img_udata_free, f};
    /* the user block is where commit puts the checksum header */
    if (fapl >= 0 && fcpl >= 0 && H5Pset_userblock(fcpl, UB_SIZE) >= 0 && H5Pset_fapl_core(fapl, inc, 0) >= 0 &&
        H5Pset_file_image_callbacks(fapl, &cb) >= 0)
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

static blt_status need_open(const blt_h5 *f, const char *fn)
{
    if (!f || f->file < 0) return blt_fail(BLT_ESTATE, "%s: the file is closed", fn);
    return BLT_OK;
}

/* Opens obj for attributes; creates its groups when writing. */
static blt_status open_obj(blt_h5 *f, const char *fn, const char *obj, hid_t *o)
{
    *o = -1;
    BLT_TRY(check_path(fn, f, obj, 1));
    int t = object_type(f, fn, obj);
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
    BLT_TRY(open_obj(f, fn, obj, &o));
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
static int64_t shape_numel(int ndim, const int64_t *shape)
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
    BLT_TRY(check_path(fn, f, dset, 0));
    if (file_type(type) < 0)
        return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: cannot write type %s", fn, f->path, dset, blt_h5_type_name(type));
    if (ndim < 0 || ndim > BLT_H5_MAX_DIMS)
        return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: rank %d out of 0..%d", fn, f->path, dset, ndim, BLT_H5_MAX_DIMS);
    int64_t numel = shape_numel(ndim, shape);
    if (numel < 0) {
        char sb[160];
        return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: bad shape %s", fn, f->path, dset,
                        blt_fmt_shape(sb, sizeof sb, ndim, shape));
    }
    if (numel > 0 && !data) return blt_fail(BLT_EINVAL, "%s: %s: dataset %s: no data", fn, f->path, dset);
    int t = object_type(f, fn, dset);
    if (t == -2) return BLT_EFORMAT;
    if (t != H5I_BADID) return blt_fail(BLT_EINVAL, "%s: %s: '%s' was already written", fn, f->path, dset);
    BLT_TRY(make_groups(f, fn, dset, 0));

    hsize_t dims[BLT_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t sp = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    hid_t d = sp < 0 ? -1 : H5Dcreate2(f->file, dset, file_type(type), sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    blt_status s = BLT_OK;
    if (d < 0) s = blt_fail(BLT_EIO, "%s: %s: cannot create dataset %s (%s)", fn, f->path, dset, blt_h5u_msg());
    else if (numel > 0 && H5Dwrite(d, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
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
    /* HDF5 writes its last metadata into the image as it closes; we keep the image */
    hid_t file = f->file;
    f->file = -1;
    f->keep_img = 1;
    herr_t cl = H5Fclose(file);
    f->keep_img = 0;
    const unsigned char *im = f->img;
    uint64_t size = 0;
    if (cl < 0 || !im) {
        s = blt_fail(BLT_EIO, "%s: %s: cannot finish the file (%s)", fn, f->path, cl < 0 ? blt_h5u_msg() : "no image");
        blt_h5_abort(f);
        return s;
    }
    /* its length is the end-of-file address of the superblock (version 2 or 3,
     * 8-byte addresses: signature, version, sizes, flags, base, extension, eof),
     * which sits after the user block; addresses count from the base address */
    const unsigned char *sb = im + UB_SIZE;
    if (f->img_size >= UB_SIZE + 48 && !memcmp(sb, hdf5_sig, 8) && (sb[8] == 2 || sb[8] == 3) && sb[9] == 8)
        size = get_le(sb + 12, 8) + get_le(sb + 28, 8);
    if (size < UB_SIZE + 48 || size > f->img_size) {
        s = blt_fail(BLT_EIO, "%s: %s: unexpected in-memory HDF5 image (superblock v%d, eof %llu of %zu bytes)", fn,
                     f->path, f->img_size > UB_SIZE + 8 ? sb[8] : -1, (unsigned long long)size, f->img_size);
        blt_h5_abort(f);
        return s;
    }
    seal_image(f->img, size);
    H5Eclear2(H5E_DEFAULT);
    /* write, flush to the disk, close, rename over the target */
    const char *step = "write";
    int ok = blt_write_all(f->fd, f->img, (size_t)size) == 0;
    free(f->img);
    f->img = NULL;
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
    blt_status s = verify_file(fn, path, fd, (long long)st.st_size, &sealed);
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

/* Opens attribute name of obj; *a = -1 when obj or the attribute is missing. */
static blt_status open_attr(blt_h5 *f, const char *fn, const char *obj, const char *name, hid_t *a)
{
    *a = -1;
    BLT_TRY(need_open(f, fn));
    BLT_TRY(check_path(fn, f, obj, 1));
    if (!name || !name[0]) return blt_fail(BLT_EINVAL, "%s: %s: empty attribute name", fn, f->path);
    int t = object_type(f, fn, obj);
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
    BLT_TRY(need_open(f, fn));
    if (!f->writing) {
        BLT_TRY(check_path(fn, f, obj, 1));
        int t = object_type(f, fn, obj);
        if (t == -2) return BLT_EFORMAT;
        if (t == H5I_BADID) return blt_fail(BLT_EFORMAT, "%s: %s: no object '%s'", fn, f->path, obj);
    }
    BLT_TRY(open_obj(f, fn, obj, &o));
    name_list l = {0};
    l.limit = f->writing ? INT32_MAX : (f->fsize < INT32_MAX ? f->fsize : INT32_MAX);
    hsize_t idx = 0;
    blt_status s = BLT_OK;
    if (H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &l) < 0)
        s = l.oom ? blt_fail(BLT_ENOMEM, "%s: out of memory", fn)
                  : blt_fail(BLT_EFORMAT, "%s: %s: cannot list the attributes of '%s' (%s)", fn, f->path, obj, blt_h5u_msg());
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
    BLT_TRY(need_open(f, fn));
    BLT_TRY(check_path(fn, f, group, 1));
    int t = object_type(f, fn, group);
    if (t == -2) return BLT_EFORMAT;
    if (t == H5I_BADID) return BLT_OK;
    if (t != H5I_GROUP) return blt_fail(BLT_EFORMAT, "%s: %s: '%s' is not a group", fn, f->path, group);
    if (exists) *exists = 1;
    hid_t g = H5Gopen2(f->file, group, H5P_DEFAULT);
    if (g < 0) return blt_fail(BLT_EFORMAT, "%s: %s: cannot open group '%s' (%s)", fn, f->path, group, blt_h5u_msg());
    name_list l = {0};
    l.limit = f->writing ? INT32_MAX : (f->fsize < INT32_MAX ? f->fsize : INT32_MAX);
    hsize_t idx = 0;
    blt_status s = BLT_OK;
    /* native order: on a damaged group, HDF5 1.10's sorted iteration frees a
     * half-built link table (a double free in H5G__link_release_table); the
     * names are sorted here instead */
    if (blt_Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, link_cb, &l) < 0)
        s = l.oom ? blt_fail(BLT_ENOMEM, "%s: out of memory", fn)
                  : blt_fail(BLT_EFORMAT, "%s: %s: cannot list group '%s' (%s)", fn, f->path, group, blt_h5u_msg());
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
    BLT_TRY(need_open(f, "h5_exists"));
    BLT_TRY(check_path("h5_exists", f, dset, 1));
    int t = object_type(f, "h5_exists", dset);
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
    BLT_TRY(need_open(f, fn));
    BLT_TRY(check_path(fn, f, dset, 0));
    int t = object_type(f, fn, dset);
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
    *numel = shape_numel(nd, shape);
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
    if (mem_type(type) < 0) {
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
    if (numel > 0 && H5Dread(d, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
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
