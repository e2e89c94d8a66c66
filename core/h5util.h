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

#endif
