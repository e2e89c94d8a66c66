/* The whole-file checksum of checkpoints (see h5seal.h). No HDF5 here: the header is
 * checked before HDF5 sees a byte of the file.
 *
 * Every file written by blt_h5_create starts with a 512-byte HDF5 user block (HDF5
 * and h5py skip it) holding a header: magic "BLT-CKPT", version, user block size,
 * file length and the CRC-32 (zlib's) of the whole file with the CRC field read as
 * zeros. blt_h5_open checks it before HDF5 parses anything: HDF5's metadata
 * checksums do not cover raw data, v1 B-trees, local or global heaps, and HDF5 1.10
 * crashes on some damaged files (a bad free in H5Literate on a zeroed fractal heap),
 * so damage must be caught before parsing. */
#include "h5seal.h"
#include "h5io.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

void blt_h5s_seal(unsigned char *im, uint64_t len)
{
    memset(im, 0, BLT_H5S_UB_SIZE);
    memcpy(im, UB_MAGIC, 8);
    put_le(im + 8, UB_VERSION, 4);
    put_le(im + 12, BLT_H5S_UB_SIZE, 4);
    put_le(im + 16, len, 8);
    put_le(im + UB_CRC_AT, blt_h5_crc32(0, im, (size_t)len), 4); /* the field is still zero here */
}

blt_status blt_h5s_verify(const char *fn, const char *path, int fd, long long size, int *sealed)
{
    unsigned char ub[BLT_H5S_UB_SIZE];
    *sealed = 0;
    size_t got = 0;
    while (got < BLT_H5S_UB_SIZE) {
        ssize_t r = pread(fd, ub + got, BLT_H5S_UB_SIZE - got, (off_t)got);
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
    if (got < BLT_H5S_UB_SIZE)
        return blt_fail(BLT_EFORMAT, "%s: %s: truncated: %lld bytes, shorter than its %d-byte checksum header", fn, path,
                        size, BLT_H5S_UB_SIZE);
    uint64_t ver = get_le(ub + 8, 4), ubs = get_le(ub + 12, 4), len = get_le(ub + 16, 8);
    if (ver != UB_VERSION || ubs != BLT_H5S_UB_SIZE)
        return blt_fail(BLT_EFORMAT, "%s: %s: checksum header version %llu (user block %llu bytes) is not %d (%d): "
                        "damaged, or written by a newer framework", fn, path, (unsigned long long)ver,
                        (unsigned long long)ubs, UB_VERSION, BLT_H5S_UB_SIZE);
    if (len != (uint64_t)size)
        return blt_fail(BLT_EFORMAT, "%s: %s: the file has %lld bytes, its header says %llu: %s", fn, path, size,
                        (unsigned long long)len, (uint64_t)size < len ? "truncated" : "damaged or appended to");
    uint32_t want = (uint32_t)get_le(ub + UB_CRC_AT, 4);
    memset(ub + UB_CRC_AT, 0, 4);
    uint32_t crc = blt_h5_crc32(0, ub, BLT_H5S_UB_SIZE);
    size_t cap = (size_t)1 << 20;
    unsigned char *buf = malloc(cap);
    if (!buf) return blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
    long long off = BLT_H5S_UB_SIZE;
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
