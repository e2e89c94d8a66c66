/* Data-parallel processes over MPI (core/dist.h). The only file that includes mpi.h;
 * without BLT_HAVE_MPI (the Makefile defines it when it finds Open MPI) the same
 * functions describe a world of one process. */
#include "dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the state of a world of one process; MPI fills it in when it starts */
static int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1;

int blt_dist_rank(void) { return g_rank; }
int blt_dist_size(void) { return g_size; }
int blt_dist_local_rank(void) { return g_local_rank; }
int blt_dist_local_size(void) { return g_local_size; }

#ifdef BLT_HAVE_MPI
#include <mpi.h>

static int g_started; /* MPI_Init succeeded here */
static int g_ended;   /* finalized or aborting */

int blt_dist_compiled(void) { return 1; }
int blt_dist_active(void) { return g_started && !g_ended; }

const char *blt_dist_library(void)
{
    static char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (!version[0] && MPI_Get_library_version(version, &len) == MPI_SUCCESS) {
        char *nl = strchr(version, '\n'); /* the first line names the library and version */
        if (nl) *nl = 0;
        char *comma = strchr(version, ',');
        if (comma) *comma = 0;
    }
    return version;
}

/* An MPI error code as a blt status with MPI's own words. */
static blt_status mpi_fail(const char *fn, int err)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", err);
    return blt_fail(BLT_EIO, "%s: %s (rank %d of %d)", fn, msg, g_rank, g_size);
}

static blt_status need_world(const char *fn)
{
    if (g_ended) return blt_fail(BLT_ESTATE, "%s: MPI has already ended in this process", fn);
    return BLT_OK;
}

/* Launched by mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE; other launchers PMI_SIZE). */
static int launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL || getenv("PMIX_RANK") != NULL;
}

blt_status blt_dist_init(void)
{
    if (g_started || !launched_by_mpirun()) return BLT_OK;
    int provided = 0, err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (err != MPI_SUCCESS) return blt_fail(BLT_EIO, "dist_init: MPI_Init_thread failed (error %d)", err);
    g_started = 1;
    /* errors come back as codes (then Lua errors) instead of MPI's default abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_rank(local, &g_local_rank);
        MPI_Comm_size(local, &g_local_size);
        MPI_Comm_free(&local);
    }
    return BLT_OK;
}

/* MPI counts are int: a long buffer goes in pieces of at most 2^30 elements. */
#define PIECE ((int64_t)1 << 30)

static blt_status allreduce(const char *fn, void *buf, int64_t n, MPI_Datatype type, size_t elem, MPI_Op op)
{
    BLT_TRY(need_world(fn));
    if (n < 0) return blt_fail(BLT_EINVAL, "%s: negative length %lld", fn, (long long)n);
    if (!g_started || g_size == 1) return BLT_OK;
    char *p = buf;
    for (int64_t off = 0; off < n; off += PIECE) {
        int count = (int)(n - off < PIECE ? n - off : PIECE);
        int err = MPI_Allreduce(MPI_IN_PLACE, p + (size_t)off * elem, count, type, op, MPI_COMM_WORLD);
        if (err != MPI_SUCCESS) return mpi_fail(fn, err);
    }
    return BLT_OK;
}

blt_status blt_dist_allreduce_sum_f32(float *buf, int64_t n)
{
    return allreduce("dist_allreduce_sum", buf, n, MPI_FLOAT, sizeof(float), MPI_SUM);
}

blt_status blt_dist_allreduce_sum_f64(double *buf, int64_t n)
{
    return allreduce("dist_allreduce_sum", buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM);
}

blt_status blt_dist_allreduce_max_f64(double *v)
{
    return allreduce("dist_allreduce_max", v, 1, MPI_DOUBLE, sizeof(double), MPI_MAX);
}

blt_status blt_dist_barrier(void)
{
    BLT_TRY(need_world("dist_barrier"));
    if (!g_started || g_size == 1) return BLT_OK;
    int err = MPI_Barrier(MPI_COMM_WORLD);
    return err == MPI_SUCCESS ? BLT_OK : mpi_fail("dist_barrier", err);
}

blt_status blt_dist_bcast_bytes(char **buf, size_t *len)
{
    BLT_TRY(need_world("dist_bcast"));
    if (!g_started || g_size == 1) return BLT_OK;
    if (*len > (size_t)PIECE) return blt_fail(BLT_EINVAL, "dist_bcast: %zu bytes is more than 2^30", *len);
    long long n = g_rank == 0 ? (long long)*len : 0;
    int err = MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) return mpi_fail("dist_bcast", err);
    char *data = *buf;
    if (g_rank != 0) {
        data = malloc((size_t)n + 1);
        if (!data) return blt_fail(BLT_ENOMEM, "dist_bcast: out of memory for %lld bytes", n);
    }
    err = MPI_Bcast(data, (int)n, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) {
        if (g_rank != 0) free(data);
        return mpi_fail("dist_bcast", err);
    }
    if (g_rank != 0) {
        data[n] = 0;
        *buf = data;
        *len = (size_t)n;
    }
    return BLT_OK;
}

void blt_dist_abort(const char *msg, int code)
{
    if (msg) {
        fprintf(stderr, "%s\n", msg);
        fflush(stderr);
    }
    if (!blt_dist_active() || g_size == 1) return;
    g_ended = 1;
    MPI_Abort(MPI_COMM_WORLD, code);
}

blt_status blt_dist_finalize(void)
{
    if (!blt_dist_active()) return BLT_OK;
    g_ended = 1;
    int err = MPI_Finalize();
    return err == MPI_SUCCESS ? BLT_OK : blt_fail(BLT_EIO, "dist_finalize: MPI_Finalize failed (error %d)", err);
}

#else /* built without MPI: one process */

int blt_dist_compiled(void) { return 0; }
int blt_dist_active(void) { return 0; }
const char *blt_dist_library(void) { return "none (built without MPI)"; }
/* Started by mpirun with several processes, each would think it is alone and all would
 * train the same run: refuse, naming the fix. */
blt_status blt_dist_init(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1)
        return blt_fail(BLT_ESTATE, "dist_init: mpirun started %d processes, but ./blt was built without MPI "
                                    "(install libopenmpi-dev with 'make deps', then rebuild)", atoi(n));
    return BLT_OK;
}

static blt_status check_len(const char *fn, int64_t n)
{
    return n < 0 ? blt_fail(BLT_EINVAL, "%s: negative length %lld", fn, (long long)n) : BLT_OK;
}

blt_status blt_dist_allreduce_sum_f32(float *buf, int64_t n) { (void)buf; return check_len("dist_allreduce_sum", n); }
blt_status blt_dist_allreduce_sum_f64(double *buf, int64_t n) { (void)buf; return check_len("dist_allreduce_sum", n); }
blt_status blt_dist_allreduce_max_f64(double *v) { (void)v; return BLT_OK; }
blt_status blt_dist_barrier(void) { return BLT_OK; }
blt_status blt_dist_bcast_bytes(char **buf, size_t *len) { (void)buf; (void)len; return BLT_OK; }

void blt_dist_abort(const char *msg, int code)
{
    (void)code;
    if (msg) {
        fprintf(stderr, "%s\n", msg);
        fflush(stderr);
    }
}

blt_status blt_dist_finalize(void) { return BLT_OK; }

#endif
