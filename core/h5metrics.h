/* Metrics files (HDF5, written by h5metrics.c). */
#ifndef BLT_H5METRICS_H
#define BLT_H5METRICS_H
#include <stdint.h>
#include "status.h"

/* A per-run file of float64 columns (one extendible 1-d dataset per column name,
 * all of the same length: a row per log call, NaN where a row lacks a column).
 * Rows are buffered in memory and appended every flush_every rows: the file's image
 * in memory is extended and written whole over the file (a temporary file renamed
 * over it, safefile.h), so the file is always complete and can be read by h5dump or
 * h5py while the run goes on (no SWMR, no lock held), a failed write leaves the
 * previous file, and a symbolic link at path is replaced, never written through
 * (append refuses one).
 * append: keep the rows of an existing file (resuming a run) instead of starting
 * a new file. */
typedef struct blt_metrics blt_metrics;
blt_status blt_metrics_open(blt_metrics **out, const char *path, int flush_every, int append);
/* Declares the unit of a column ("bits/byte", "seconds"): written as the string
 * attribute "unit" of the column's dataset when the column is first flushed. */
blt_status blt_metrics_unit(blt_metrics *m, const char *name, const char *unit);
blt_status blt_metrics_log(blt_metrics *m, int ncols, const char *const *names, const double *values);
blt_status blt_metrics_flush(blt_metrics *m);
/* Flushes and frees m (even when the flush fails). NULL is fine. */
blt_status blt_metrics_close(blt_metrics *m);
int64_t blt_metrics_rows(const blt_metrics *m); /* rows logged, flushed or not */
/* Sets attributes of the file's root group (a run's result: final validation, exit
 * reason...): names[i] gets strs[i] when strs[i] is not NULL, else nums[i] (float64).
 * An attribute of that name is replaced. */
blt_status blt_metrics_annotate(blt_metrics *m, int n, const char *const *names, const char *const *strs,
                                const double *nums);
/* Keeps the first `rows` rows (a resumed run drops what it will log again). */
blt_status blt_metrics_truncate(blt_metrics *m, int64_t rows);

#endif
