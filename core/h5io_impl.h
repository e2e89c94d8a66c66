/* Private to h5io.c and h5read.c: the open checkpoint file and the helpers both use
 * (object paths, shapes, memory types). */
#ifndef BLT_H5IO_IMPL_H
#define BLT_H5IO_IMPL_H
#include "h5io.h"
#include "h5util.h"

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
    blt_h5u_image im; /* writer: HDF5's file in memory, taken over when it closes */
    long long fsize; /* reader: bytes on disk, the bound for declared sizes */
    int sealed;      /* reader: the checksum header was present and matched */
};

/* An absolute path of non-empty components, none of them "." or "..". */
blt_status blt_h5i_check_path(const char *fn, const blt_h5 *f, const char *p, int allow_root);
/* Type of the object at p: H5I_GROUP, H5I_DATASET, ..., or H5I_BADID when
 * missing; -2 on error (message set). Only hard links are followed. */
int blt_h5i_object_type(const blt_h5 *f, const char *fn, const char *p);
/* Opens obj for attributes; creates its groups when writing. */
blt_status blt_h5i_open_obj(blt_h5 *f, const char *fn, const char *obj, hid_t *o);
/* An error unless f is open. */
blt_status blt_h5i_need_open(const blt_h5 *f, const char *fn);
/* numel of a shape, or -1 on a negative size or overflow past 2^62 */
int64_t blt_h5i_numel(int ndim, const int64_t *shape);
/* The native memory type of t, -1 for STR and OTHER. */
hid_t blt_h5i_mem_type(blt_h5_type t);

#endif
