/* Private to the HDF5 files (h5io.c, h5metrics.c, h5util.c), the only ones that
 * include hdf5.h: the helpers both the checkpoint and the metrics code use. */
#ifndef BLT_H5UTIL_H
#define BLT_H5UTIL_H
#include <hdf5.h>

#define BLT_H5U_PATH_CAP 1024 /* longest object path, with its NUL */

/* The innermost message of the HDF5 error stack, then clears the stack. */
const char *blt_h5u_msg(void);
/* Opens the library once (its error printing and plugin loading off); clears the
 * error stack. Every entry point calls it first. */
void blt_h5u_init(void);
/* Closes any kind of HDF5 id; a negative id is ignored. */
void blt_h5u_close_id(hid_t id);
/* File access properties: 1.8 format or later, strong close, file locking on or off
 * (a file system without locks is no error). -1 on failure. */
hid_t blt_h5u_fapl(int locking);
/* malloc'ed copy of s, NULL when out of memory. */
char *blt_h5u_dupstr(const char *s);

/* An HDF5 file edited in memory (the core driver, no backing store): HDF5 never
 * writes to the disk itself, so a failing write (disk full, read-only) is a clean
 * error on our own descriptor (safefile.h) instead of a half-closed HDF5 file,
 * which HDF5 1.10 tries to close again at exit and crashes on. */
typedef struct {
    void *img;  /* after blt_h5u_image_close: the file's bytes (free them) */
    size_t cap; /* bytes allocated for the image */
    size_t len; /* bytes of the file within it (the superblock's end of file) */
    int keep;   /* while closing: keep the final buffer */
} blt_h5u_image;
/* File access properties for a file in memory, starting as buf[0..n) when n > 0
 * (H5Fopen it) or empty (H5Fcreate it); its name is never opened. -1 on failure. */
hid_t blt_h5u_image_fapl(blt_h5u_image *im, const void *buf, size_t n);
/* Closes file and takes its bytes into im (img, cap, len); negative on failure. */
herr_t blt_h5u_image_close(blt_h5u_image *im, hid_t file);

#endif
