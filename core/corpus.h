/* Byte corpora: files mapped read-only, seen as one stream of token ids.
 *
 * Stream (docs/model.md): every document's bytes b become ids b + OFFSET and
 * every document is followed by EOS (core/ids.h), the last one included, so the stream holds
 * bytes + documents ids. A document is one file (see separator below). Paths may name files or
 * directories; a directory contributes its regular files recursively, in sorted
 * (strcmp, byte-wise) name order at each level, depth first; entries whose names
 * start with '.' are skipped, empty files inside a directory are skipped, symbolic
 * links to files are followed, symbolic links to directories are not.
 *
 * Split: validation = the last floor(val_fraction * stream) ids of the stream,
 * train = the ids before it. The boundary may fall inside a document.
 *
 * Options (blt_corpus_opts): with separator s in [0, 255], a file holds many
 * documents, each but its last ended by the byte s, which the stream shows as EOS
 * (so the stream has the same length as without it; bytes and documents count the
 * documents). With val_files k > 0, validation = the last k files, exactly, and
 * val_fraction is not used: a document-level split (docs/data.md, the studies corpus).
 *
 * Files are mmap'ed (PROT_READ, MAP_PRIVATE) and never read whole: opening costs
 * a stat and a mapping per file, and resident memory grows only with the pages
 * actually touched. A file must not shrink while it is open (reading a page past
 * its new end raises SIGBUS). docs/data.md has the rest. */
#ifndef BLT_CORPUS_H
#define BLT_CORPUS_H
#include <stdint.h>
#include "ids.h"
#include "rng.h"
#include "status.h"


typedef struct blt_corpus blt_corpus;

typedef struct {
    int64_t bytes;     /* sum of the documents' sizes */
    int64_t documents; /* number of documents (files, or with a separator: separators + files) */
    int64_t stream;    /* ids in the stream: bytes + documents */
    int64_t train;     /* ids of the train split: stream positions [0, train) */
    int64_t val;       /* ids of the validation split: positions [train, stream) */
    double val_fraction; /* val / stream when the split is by files */
    int separator;       /* the separator byte, -1 when none */
    int64_t files;       /* number of files */
} blt_corpus_info;

typedef struct {
    double val_fraction; /* in [0, 1]; not used when val_files > 0 */
    int64_t val_files;   /* > 0: the last val_files files are the validation split */
    int separator;       /* -1: none; 0..255: the byte that ends a document inside a file */
} blt_corpus_opts;

/* Opens npaths paths (files or directories, expanded in the order given).
 * val_fraction in [0, 1] (1: everything is validation, nothing to sample). Errors (BLT_EIO / BLT_EINVAL) name the path: missing,
 * unreadable, an explicitly named empty file, neither a file nor a directory, a
 * directory with no non-empty regular file, nothing at all to open. */
blt_status blt_corpus_open(blt_corpus **out, int npaths, const char *const *paths, double val_fraction);
/* The same with options; val_files larger than the number of files is an error. */
blt_status blt_corpus_open_opts(blt_corpus **out, int npaths, const char *const *paths, const blt_corpus_opts *o);
/* Unmaps everything; NULL is fine. */
void blt_corpus_close(blt_corpus *c);

blt_status blt_corpus_get_info(const blt_corpus *c, blt_corpus_info *info);
/* Path and stream start of document i (0-based); the pointer lives as long as c. */
blt_status blt_corpus_document(const blt_corpus *c, int64_t i, const char **path, int64_t *start,
                               int64_t *size);

/* out[0..n-1] = stream ids at positions [pos, pos + n); the range must lie in
 * [0, stream). */
blt_status blt_corpus_ids(const blt_corpus *c, int64_t pos, int64_t n, int32_t *out);

/* Sampler. out is an int32 [B, N] buffer, row-major. Row b = [BOS, the N-1
 * stream ids starting at o_b], o_b = blt_rng_below(r, train - (N-1) + 1) drawn in
 * row order, so every window lies inside the train split. All state is in r.
 * Needs N >= 2 and train >= N - 1. */
blt_status blt_corpus_sample(const blt_corpus *c, blt_rng *r, int64_t B, int64_t N, int32_t *out);

/* Validation windows of N - 1 ids (N >= 2): window k covers validation ids
 * [k(N-1), min((k+1)(N-1), val)), so each validation id is a target in exactly one
 * window. Returns the number of windows, ceil(val / (N-1)) (0 when val is 0 or
 * N < 2). */
int64_t blt_corpus_val_count(const blt_corpus *c, int64_t N);
/* Fills rows for windows first .. first+B-1 (all must exist) into out [B, N]:
 * row = [BOS, ids of the window] padded with PAD (0); len[b] = the row's true
 * length, BOS included (so len[b] - 1 targets: row[1 .. len[b]-1]). */
blt_status blt_corpus_val_windows(const blt_corpus *c, int64_t first, int64_t B, int64_t N, int32_t *out,
                                  int64_t *len);

#endif
