/* Data-parallel processes: the one interface to MPI (core/dist.c is the only file
 * that includes mpi.h). Built without MPI, or run without mpirun, it is a world of
 * one process: rank 0 of size 1, and every collective returns at once.
 *
 * MPI is started only when the process was launched by mpirun (OMPI_COMM_WORLD_SIZE
 * or PMI_SIZE in the environment), so a plain ./blt starts as fast as before.
 * Collectives are called from the main thread only (MPI_THREAD_FUNNELED). */
#ifndef BLT_DIST_H
#define BLT_DIST_H
#include "status.h"
#include <stddef.h>
#include <stdint.h>

/* Starts MPI when launched by mpirun; a no-op otherwise or when called again. */
blt_status blt_dist_init(void);
int blt_dist_rank(void);
int blt_dist_size(void);
/* Processes of this job on this machine (MPI_Comm_split_type SHARED), and this
 * process's index among them. */
int blt_dist_local_size(void);
int blt_dist_local_rank(void);
/* 1 when compiled with MPI, whether or not it was started. */
int blt_dist_compiled(void);
/* "Open MPI v4.1.4, ..." or "none (built without MPI)". */
const char *blt_dist_library(void);

/* In-place element-wise sums over all processes. */
blt_status blt_dist_allreduce_sum_f32(float *buf, int64_t n);
blt_status blt_dist_allreduce_sum_f64(double *buf, int64_t n);
/* In-place maximum of one number. */
blt_status blt_dist_allreduce_max_f64(double *v);
blt_status blt_dist_barrier(void);
/* Rank 0's bytes to every process: on rank 0 *buf and *len are read; elsewhere *buf is
 * set to a new malloc'ed copy (the caller frees it) and *len to its length. */
blt_status blt_dist_bcast_bytes(char **buf, size_t *len);

/* Ends the whole job now: prints msg (when not NULL) and has mpirun stop every
 * process with status code. Without MPI it returns (the caller exits). */
void blt_dist_abort(const char *msg, int code);
/* Orderly end: every process must reach it. A no-op when MPI was not started or
 * has already ended. */
blt_status blt_dist_finalize(void);
/* MPI was started and has not ended. */
int blt_dist_active(void);

#endif
