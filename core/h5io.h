/* HDF5 input and output of checkpoints (docs/model.md); the metrics files are
 * h5metrics.h. Only h5io.c, h5metrics.c and h5util.c include hdf5.h; callers see
 * plain C types.
 *
 * Writing is atomic: blt_h5_create() creates "<path>.tmp.<pid>" in the same folder
 * and builds the HDF5 file in memory (core driver, no backing store);
 * blt_h5_commit() takes the finished image (H5Fflush + H5Fget_file_image), writes
 * it to the temporary file, fsyncs and closes it, renames it over <path> and
 * fsyncs the folder; blt_h5_abort() removes it. A save that fails or is
 * interrupted leaves the previous <path> as it was. HDF5 itself never writes to
 * the disk, so a disk-full error is our clean error (HDF5 1.10 crashes at exit
 * when a file it could not flush is left open). The price: a save holds the whole
 * file in memory once (HDF5's image, taken over at close and written out). The
 * metrics writer, in contrast, lets HDF5 write to the disk (h5metrics.h).
 *
 * Every written file starts with a 512-byte user block holding a checksum header
 * (the CRC-32 of the whole file); opening checks it before HDF5 parses anything.
 * Reading validates before it allocates or copies: a dataset's dtype, rank and
 * shape are checked against what the caller expects, a declared size larger than
 * the file itself is refused (hostile files), and float data can be checked for
 * NaN/Inf. Metadata is written with the HDF5 1.8 file format (superblock v2,
 * object header v2), whose metadata carries checksums, so a corrupted file is
 * reported as such instead of being parsed.
 *
 * Dataset paths are absolute, like "/params/encoder.layers.0.attn.wq": groups are
 * separated by '/', dots are part of the name, missing groups are created.
 * Every function returns a blt_status; on failure blt_errmsg() names the function,
 * the file and the dataset. Not thread-safe (the serial HDF5 library is not). */
#ifndef BLT_H5IO_H
#define BLT_H5IO_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#define BLT_H5_MAX_DIMS 8

typedef enum {
    BLT_H5_F32 = 0,
    BLT_H5_F64,
    BLT_H5_I32,
    BLT_H5_I64,
    BLT_H5_U64,
    BLT_H5_STR, /* only reported by blt_h5_info (string datasets written by other tools) */
    BLT_H5_OTHER
} blt_h5_type;

const char *blt_h5_type_name(blt_h5_type t);
size_t blt_h5_type_size(blt_h5_type t); /* 0 for STR and OTHER */

typedef struct blt_h5 blt_h5; /* an open checkpoint file, for writing or for reading */

/* ---- writing ---- */
/* size_hint: about how many bytes the file will hold (0 if unknown), so that the
 * in-memory image is allocated once. */
blt_status blt_h5_create(blt_h5 **out, const char *path, size_t size_hint);
/* Attributes on an object ("/" for the root, or a group or dataset path); the
 * groups of a path that does not exist yet are created. */
blt_status blt_h5_set_attr_str(blt_h5 *f, const char *obj, const char *name, const char *value);
blt_status blt_h5_set_attr_int(blt_h5 *f, const char *obj, const char *name, int64_t value);
/* data: numel(shape) contiguous elements of type, outermost dimension first;
 * ndim 0 writes a scalar dataset. */
blt_status blt_h5_write(blt_h5 *f, const char *dset, blt_h5_type type, int ndim, const int64_t *shape,
                        const void *data);
/* Writes the image to the temporary file, fsync, close, rename over the target. Frees f whatever the outcome;
 * on failure the temporary file is removed. */
blt_status blt_h5_commit(blt_h5 *f);
/* Closes and removes the temporary file; frees f. NULL is fine. */
void blt_h5_abort(blt_h5 *f);
/* The temporary file being written ("" for a file open for reading). */
const char *blt_h5_tmp_path(const blt_h5 *f);

/* ---- reading ---- */
/* Before HDF5 reads anything, the checksum header (the first 512 bytes, HDF5's
 * user block, written by blt_h5_commit) is checked: magic, version, the file's
 * length and the CRC-32 of the whole file. A file with a damaged header or a
 * wrong checksum is refused. A plain HDF5 file (signature at offset 0: older
 * checkpoints, metrics files, files written by h5py) is opened unchecked unless
 * flags has BLT_H5_REQUIRE_CHECKSUM. */
enum { BLT_H5_REQUIRE_CHECKSUM = 1 };
blt_status blt_h5_open(blt_h5 **out, const char *path, int flags);
/* 1 when the file opened had a valid checksum header, 0 otherwise. */
int blt_h5_sealed(const blt_h5 *f);
/* CRC-32 (zlib's polynomial) of n bytes, continuing from crc (0 to start). */
uint32_t blt_h5_crc32(uint32_t crc, const void *data, size_t n);
void blt_h5_close(blt_h5 *f); /* closes a reader, or aborts a writer; NULL is fine */
const char *blt_h5_path(const blt_h5 *f);

/* Attribute kinds for blt_h5_attr_kind. */
enum { BLT_H5_ATTR_NONE = 0, BLT_H5_ATTR_INT, BLT_H5_ATTR_FLOAT, BLT_H5_ATTR_STR, BLT_H5_ATTR_OTHER };
/* *kind = BLT_H5_ATTR_NONE when obj or the attribute does not exist. */
blt_status blt_h5_attr_kind(blt_h5 *f, const char *obj, const char *name, int *kind);
blt_status blt_h5_get_attr_int(blt_h5 *f, const char *obj, const char *name, int64_t *value);
blt_status blt_h5_get_attr_float(blt_h5 *f, const char *obj, const char *name, double *value);
/* *value is malloc'ed (free it), NUL-terminated. */
blt_status blt_h5_get_attr_str(blt_h5 *f, const char *obj, const char *name, char **value);
/* Names of the attributes of obj, in name order. *names and each entry are
 * malloc'ed: release with blt_h5_free_names. */
blt_status blt_h5_attr_names(blt_h5 *f, const char *obj, char ***names, int *n);

/* Children of a group in name order; kinds[i] is 'd' (dataset), 'g' (group) or
 * '?' (anything else). A missing group gives *n = 0 and *exists = 0 (exists may be
 * NULL). kinds may be NULL; otherwise *kinds is malloc'ed. */
blt_status blt_h5_list(blt_h5 *f, const char *group, char ***names, char **kinds, int *n, int *exists);
void blt_h5_free_names(char **names, int n);

/* Whether dset exists and is a dataset. */
blt_status blt_h5_exists(blt_h5 *f, const char *dset, int *exists);
/* Type and shape of a dataset; refuses a rank above BLT_H5_MAX_DIMS and a declared
 * size larger than the file. */
blt_status blt_h5_info(blt_h5 *f, const char *dset, blt_h5_type *type, int *ndim, int64_t *shape);
/* Reads dset into data (cap bytes) after checking that its type is type and its
 * shape is (ndim, shape). check_finite: a NaN or Inf is an error naming the
 * dataset and the element. */
blt_status blt_h5_read(blt_h5 *f, const char *dset, blt_h5_type type, int ndim, const int64_t *shape,
                       void *data, size_t cap, int check_finite);

#endif
