/* The HDF5 helpers shared by h5io.c (checkpoints) and h5metrics.c (metrics files):
 * error messages, library setup, closing ids, file access properties. */
#include "h5util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    char *buf = data;
    (void)n;
    if (!buf[0] && e->desc && e->desc[0]) snprintf(buf, 300, "%s", e->desc);
    return 0;
}

/* The innermost message of the HDF5 error stack, then clears the stack. */
const char *blt_h5u_msg(void)
{
    static _Thread_local char buf[300];
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    if (!buf[0]) snprintf(buf, sizeof buf, "HDF5 error");
    return buf;
}

void blt_h5u_init(void)
{
    static int done;
    if (!done) {
        H5open();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        /* a file must not make HDF5 load a filter plugin (a shared library) */
        H5PLset_loading_state(0);
        done = 1;
    }
    H5Eclear2(H5E_DEFAULT);
}

void blt_h5u_close_id(hid_t id)
{
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

hid_t blt_h5u_fapl(int locking)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG); /* closing the file closes everything in it */
#if H5_VERSION_GE(1, 10, 7)
    /* locking on, but a file system without locks (NFS, Lustre) is no error */
    H5Pset_file_locking(fapl, locking ? 1 : 0, 1);
#else
    (void)locking;
#endif
    return fapl;
}

char *blt_h5u_dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- files in memory ---- */

/* The core driver's buffer goes through these callbacks: the close hands the final
 * buffer over instead of freeing it (H5Fget_file_image of 1.10 returns a superblock
 * whose checksum no longer matches, so the image is taken after the close). */
static void *im_malloc(size_t size, H5FD_file_image_op_t op, void *ud)
{
    void *p = malloc(size);
    if (p && op == H5FD_FILE_IMAGE_OP_FILE_OPEN) ((blt_h5u_image *)ud)->cap = size;
    return p;
}
static void *im_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op, void *ud)
{
    (void)op; (void)ud;
    return memcpy(dst, src, size);
}
static void *im_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *ud)
{
    void *p = realloc(ptr, size);
    if (p && op == H5FD_FILE_IMAGE_OP_FILE_RESIZE) ((blt_h5u_image *)ud)->cap = size;
    return p;
}
static herr_t im_free(void *ptr, H5FD_file_image_op_t op, void *ud)
{
    blt_h5u_image *im = ud;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && im->keep) im->img = ptr;
    else free(ptr);
    return 0;
}
static void *im_udata_copy(void *ud) { return ud; }
static herr_t im_udata_free(void *ud) { (void)ud; return 0; }

hid_t blt_h5u_image_fapl(blt_h5u_image *im, const void *buf, size_t n)
{
    memset(im, 0, sizeof *im);
    hid_t fapl = blt_h5u_fapl(0);
    H5FD_file_image_callbacks_t cb = {im_malloc, im_memcpy, im_realloc, im_free, im_udata_copy, im_udata_free, im};
    if (fapl < 0 || H5Pset_fapl_core(fapl, (size_t)1 << 16, 0) < 0 || H5Pset_file_image_callbacks(fapl, &cb) < 0 ||
        (n > 0 && H5Pset_file_image(fapl, (void *)buf, n) < 0)) {
        blt_h5u_close_id(fapl);
        return -1;
    }
    return fapl;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

herr_t blt_h5u_image_close(blt_h5u_image *im, hid_t file)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    im->img = NULL;
    im->keep = 1;
    herr_t r = H5Fclose(file);
    im->keep = 0;
    if (r < 0 || !im->img) {
        free(im->img);
        im->img = NULL;
        return -1;
    }
    /* the buffer grows in steps: the file is the superblock's base address plus its
     * end of file (version 2 or 3, 8-byte addresses); any other: the whole buffer */
    const unsigned char *sb = im->img;
    im->len = im->cap;
    if (im->cap >= 48 && !memcmp(sb, sig, 8) && (sb[8] == 2 || sb[8] == 3) && sb[9] == 8) {
        uint64_t len = le64(sb + 12) + le64(sb + 28);
        if (len >= 48 && len <= im->cap) im->len = (size_t)len;
    }
    return 0;
}
