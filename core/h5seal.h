/* Private to the checkpoint files (h5io.c, h5seal.c): the checksum header that fills
 * the 512-byte HDF5 user block of every checkpoint (docs/checkpoint-format.md). */
#ifndef BLT_H5SEAL_H
#define BLT_H5SEAL_H
#include <stdint.h>
#include "status.h"

#define BLT_H5S_UB_SIZE 512 /* the user block: HDF5's superblock follows it */

/* Fills the user block of a finished image of len bytes (the block included). */
void blt_h5s_seal(unsigned char *im, uint64_t len);
/* Checks the header and the checksum of the open file fd (size bytes) before
 * HDF5 reads it. *sealed: 1 when the file has a valid header and checksum,
 * 0 when it is a plain HDF5 file (signature at offset 0: an older checkpoint, or
 * one written by another tool). Anything else is an error: a damaged header must
 * not pass as "no header". fn and path name the caller and the file in messages. */
blt_status blt_h5s_verify(const char *fn, const char *path, int fd, long long size, int *sealed);

#endif
