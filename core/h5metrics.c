/* The metrics writer (h5metrics.h): float64 columns appended to an HDF5 file.
 * Existing files are read back through h5io.h.
 *
 * Every change (a flush, attributes, a truncation) is made to the file's image in
 * memory (blt_h5u_image) and written whole through a temporary file renamed over
 * the path (safefile.h): the file on disk is always complete, a failing write (disk
 * full) leaves the previous one and no HDF5 file half open, and a symbolic link at
 * the path is replaced, never followed. A metrics file is small (8 bytes a value). */
#include "h5metrics.h"
#include "h5io.h"
#include "h5util.h"
#include "safefile.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define METRICS_CHUNK 1024

typedef struct {
    char *name;
    double *buf; /* rows not yet in the file */
} metric_col;

struct blt_metrics {
    char *path;
    int flush_every;
    void *img; /* the file as on disk */
    size_t img_len;
    int64_t rows_file; /* rows in the file */
    int64_t rows_buf;  /* rows buffered */
    int64_t cap_buf;
    int ncols, capcols;
    metric_col *cols;
    int nunits;
    char **unit_of; /* pairs: column name, its unit (blt_metrics_unit) */
};

static blt_status check_col_name(const char *fn, const char *path, const char *name)
{
    if (!name || !name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return blt_fail(BLT_EINVAL, "%s: %s: bad column name '%s' (non-empty, no '/')", fn, path, name ? name : "(null)");
    return BLT_OK;
}

static int find_col(blt_metrics *m, const char *name)
{
    for (int i = 0; i < m->ncols; i++)
        if (!strcmp(m->cols[i].name, name)) return i;
    return -1;
}

static const char *unit_of(const blt_metrics *m, const char *name)
{
    for (int i = 0; i < m->nunits; i++)
        if (!strcmp(m->unit_of[2 * i], name)) return m->unit_of[2 * i + 1];
    return NULL;
}

static blt_status set_root_attr(hid_t file, const char *name, const char *str, double num);

static blt_status add_col(blt_metrics *m, const char *name, int *idx)
{
    if (m->ncols == m->capcols) {
        int cap = m->capcols ? 2 * m->capcols : 8;
        metric_col *c = realloc(m->cols, cap * sizeof *c);
        if (!c) return blt_fail(BLT_ENOMEM, "metrics: out of memory");
        m->cols = c;
        m->capcols = cap;
    }
    metric_col *c = &m->cols[m->ncols];
    c->name = blt_h5u_dupstr(name);
    c->buf = malloc((m->cap_buf ? m->cap_buf : 1) * sizeof(double));
    if (!c->name || !c->buf) {
        free(c->name);
        free(c->buf);
        return blt_fail(BLT_ENOMEM, "metrics: out of memory");
    }
    for (int64_t r = 0; r < m->rows_buf; r++) c->buf[r] = NAN;
    *idx = m->ncols++;
    return BLT_OK;
}

static void metrics_free(blt_metrics *m)
{
    if (!m) return;
    for (int i = 0; i < m->ncols; i++) {
        free(m->cols[i].name);
        free(m->cols[i].buf);
    }
    free(m->cols);
    for (int i = 0; i < 2 * m->nunits; i++) free(m->unit_of[i]);
    free(m->unit_of);
    free(m->img);
    free(m->path);
    free(m);
}

/* Opens the file's image for a change (a new, empty file when there is none yet).
 * The name is one no file can have: HDF5 refuses to open an image under the name
 * of a file that exists. */
static blt_status edit_begin(blt_metrics *m, const char *fn, blt_h5u_image *im, hid_t *file)
{
    static const char *name = "/dev/null/blt-metrics-in-memory.h5";
    hid_t fapl = blt_h5u_image_fapl(im, m->img, m->img_len, (size_t)1 << 16);
    *file = fapl < 0 ? -1 : m->img ? H5Fopen(name, H5F_ACC_RDWR, fapl) : H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    blt_h5u_close_id(fapl);
    if (*file < 0) return blt_fail(BLT_EIO, "%s: %s: cannot open the metrics file in memory (%s)", fn, m->path, blt_h5u_msg());
    return BLT_OK;
}

/* Ends a change: s == BLT_OK writes the new image over the file, else drops it. */
static blt_status edit_end(blt_metrics *m, const char *fn, blt_h5u_image *im, hid_t file, blt_status s)
{
    if (s != BLT_OK) {
        H5Fclose(file);
        H5Eclear2(H5E_DEFAULT);
        return s;
    }
    if (blt_h5u_image_close(im, file) < 0)
        return blt_fail(BLT_EIO, "%s: %s: cannot finish the metrics file in memory (%s)", fn, m->path, blt_h5u_msg());
    s = blt_write_atomic(fn, m->path, im->img, im->len, 0);
    if (s != BLT_OK) {
        free(im->img);
        return s;
    }
    free(m->img);
    m->img = im->img;
    m->img_len = im->len;
    return BLT_OK;
}

/* The bytes of an existing metrics file, never read through a symbolic link: the
 * file is the run's own, and it will be replaced. */
static blt_status read_image(blt_metrics *m, const char *fn)
{
    int fd = open(m->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ELOOP)
        return blt_fail(BLT_EIO, "%s: %s is a symbolic link: a run writes only its own files (remove the link)", fn,
                        m->path);
    if (fd < 0) return blt_fail(BLT_EIO, "%s: %s: %s", fn, m->path, strerror(errno));
    struct stat st;
    blt_status s = BLT_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) s = blt_fail(BLT_EIO, "%s: %s: not a regular file", fn, m->path);
    size_t n = s == BLT_OK ? (size_t)st.st_size : 0;
    if (s == BLT_OK && !(m->img = malloc(n ? n : 1))) s = blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
    for (size_t got = 0; s == BLT_OK && got < n;) {
        ssize_t r = read(fd, (char *)m->img + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) s = blt_fail(BLT_EIO, "%s: %s: %s", fn, m->path, r < 0 ? strerror(errno) : "shorter than its size");
        else got += (size_t)r;
    }
    close(fd);
    m->img_len = n;
    return s;
}

/* Appending to an existing file: its columns must be 1-d float datasets. */
static blt_status metrics_adopt(blt_metrics *m)
{
    const char *fn = "metrics";
    blt_h5 *f;
    BLT_TRY(blt_h5_open(&f, m->path, 0));
    char **names;
    char *kinds;
    int n, ex;
    blt_status s = blt_h5_list(f, "/", &names, &kinds, &n, &ex);
    for (int i = 0; s == BLT_OK && i < n; i++) {
        char p[BLT_H5U_PATH_CAP];
        snprintf(p, sizeof p, "/%s", names[i]);
        blt_h5_type t;
        int nd;
        int64_t sh[BLT_H5_MAX_DIMS];
        if (kinds[i] != 'd') continue;
        s = blt_h5_info(f, p, &t, &nd, sh);
        if (s != BLT_OK) break;
        if (nd != 1 || (t != BLT_H5_F64 && t != BLT_H5_F32)) {
            s = blt_fail(BLT_EFORMAT, "%s: %s: %s is not a 1-d float column", fn, m->path, p);
            break;
        }
        int idx;
        s = add_col(m, names[i], &idx);
        if (sh[0] > m->rows_file) m->rows_file = sh[0];
    }
    blt_h5_free_names(names, n);
    free(kinds);
    blt_h5_close(f);
    return s;
}

blt_status blt_metrics_open(blt_metrics **out, const char *path, int flush_every, int append)
{
    const char *fn = "metrics";
    *out = NULL;
    blt_h5u_init();
    if (!path || !path[0]) return blt_fail(BLT_EINVAL, "%s: empty path", fn);
    if (flush_every < 1) return blt_fail(BLT_EINVAL, "%s: %s: flush_every = %d (must be >= 1)", fn, path, flush_every);
    blt_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->path = blt_h5u_dupstr(path))) {
        free(m);
        return blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
    }
    m->flush_every = flush_every;
    m->cap_buf = flush_every;
    struct stat st;
    blt_status s;
    if (append && lstat(path, &st) == 0) {
        s = read_image(m, fn); /* first: a symbolic link is refused before it is read */
        if (s == BLT_OK) s = metrics_adopt(m);
    } else {
        /* a new, empty file right away: a bad folder shows now, not at the first flush */
        blt_h5u_image im;
        hid_t file;
        s = edit_begin(m, fn, &im, &file);
        if (s == BLT_OK) s = edit_end(m, fn, &im, file, BLT_OK);
    }
    if (s != BLT_OK) {
        metrics_free(m);
        return s;
    }
    *out = m;
    return BLT_OK;
}

blt_status blt_metrics_unit(blt_metrics *m, const char *name, const char *unit)
{
    const char *fn = "metrics:unit";
    if (!m) return blt_fail(BLT_ESTATE, "%s: the metrics file is closed", fn);
    BLT_TRY(check_col_name(fn, m->path, name));
    if (!unit || !unit[0]) return blt_fail(BLT_EINVAL, "%s: %s: column %s: empty unit", fn, m->path, name);
    char *n = blt_h5u_dupstr(name), *u = blt_h5u_dupstr(unit);
    char **t = n && u ? realloc(m->unit_of, (size_t)(2 * m->nunits + 2) * sizeof *t) : NULL;
    if (!t) {
        free(n);
        free(u);
        return blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
    }
    m->unit_of = t;
    t[2 * m->nunits] = n;
    t[2 * m->nunits + 1] = u;
    m->nunits++;
    return BLT_OK;
}

blt_status blt_metrics_log(blt_metrics *m, int ncols, const char *const *names, const double *values)
{
    const char *fn = "metrics:log";
    if (!m) return blt_fail(BLT_ESTATE, "%s: the metrics file is closed", fn);
    for (int i = 0; i < ncols; i++) BLT_TRY(check_col_name(fn, m->path, names[i]));
    if (m->rows_buf == m->cap_buf) { /* only when a flush failed and rows piled up */
        int64_t cap = 2 * m->cap_buf;
        for (int i = 0; i < m->ncols; i++) {
            double *b = realloc(m->cols[i].buf, cap * sizeof(double));
            if (!b) return blt_fail(BLT_ENOMEM, "%s: out of memory", fn);
            m->cols[i].buf = b;
        }
        m->cap_buf = cap;
    }
    for (int i = 0; i < ncols; i++) {
        int idx = find_col(m, names[i]);
        if (idx < 0) BLT_TRY(add_col(m, names[i], &idx));
    }
    int64_t r = m->rows_buf;
    for (int i = 0; i < m->ncols; i++) m->cols[i].buf[r] = NAN;
    for (int i = 0; i < ncols; i++) m->cols[find_col(m, names[i])].buf[r] = values[i];
    m->rows_buf++;
    if (m->rows_buf >= m->flush_every) return blt_metrics_flush(m);
    return BLT_OK;
}

/* Appends the buffered rows of one column (creating it, NaN-filled, if new). */
static blt_status flush_col(blt_metrics *m, hid_t file, metric_col *c)
{
    const char *fn = "metrics:flush";
    blt_status s = BLT_OK;
    hid_t d = -1, fsp = -1, msp = -1, dcpl = -1;
    int64_t total = m->rows_file + m->rows_buf;
    htri_t ex = H5Lexists(file, c->name, H5P_DEFAULT);
    if (ex < 0) return blt_fail(BLT_EIO, "%s: %s: cannot look up column %s (%s)", fn, m->path, c->name, blt_h5u_msg());
    if (ex == 0) {
        hsize_t cur = (hsize_t)total, max = H5S_UNLIMITED, chunk = METRICS_CHUNK;
        double nan = NAN;
        fsp = H5Screate_simple(1, &cur, &max);
        dcpl = H5Pcreate(H5P_DATASET_CREATE);
        if (fsp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, &chunk) < 0 ||
            H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &nan) < 0 ||
            H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC) < 0 ||
            (d = H5Dcreate2(file, c->name, H5T_IEEE_F64LE, fsp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
            s = blt_fail(BLT_EIO, "%s: %s: cannot create column %s (%s)", fn, m->path, c->name, blt_h5u_msg());
            goto done;
        }
        blt_h5u_close_id(fsp);
        fsp = -1;
    } else {
        hsize_t cur = (hsize_t)total;
        d = H5Dopen2(file, c->name, H5P_DEFAULT);
        if (d < 0 || H5Dset_extent(d, &cur) < 0) {
            s = blt_fail(BLT_EIO, "%s: %s: cannot extend column %s (%s)", fn, m->path, c->name, blt_h5u_msg());
            goto done;
        }
    }
    /* the column's unit, as an attribute of its dataset: a reader needs no table to tell
     * nats per token from bits per byte */
    const char *unit = unit_of(m, c->name);
    if (unit && H5Aexists(d, "unit") <= 0 && set_root_attr(d, "unit", unit, 0) != BLT_OK) {
        s = blt_fail(BLT_EIO, "%s: %s: cannot write the unit of column %s (%s)", fn, m->path, c->name, blt_h5u_msg());
        goto done;
    }
    if (m->rows_buf > 0) {
        hsize_t start = (hsize_t)m->rows_file, count = (hsize_t)m->rows_buf;
        fsp = H5Dget_space(d);
        msp = H5Screate_simple(1, &count, NULL);
        if (fsp < 0 || msp < 0 || H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dwrite(d, H5T_NATIVE_DOUBLE, msp, fsp, H5P_DEFAULT, c->buf) < 0)
            s = blt_fail(BLT_EIO, "%s: %s: cannot append to column %s (%s)", fn, m->path, c->name, blt_h5u_msg());
    }
done:
    blt_h5u_close_id(dcpl);
    blt_h5u_close_id(msp);
    blt_h5u_close_id(fsp);
    blt_h5u_close_id(d);
    return s;
}

blt_status blt_metrics_flush(blt_metrics *m)
{
    const char *fn = "metrics:flush";
    blt_h5u_init();
    if (!m) return blt_fail(BLT_ESTATE, "%s: the metrics file is closed", fn);
    if (m->rows_buf == 0) return BLT_OK;
    blt_h5u_image im;
    hid_t file;
    BLT_TRY(edit_begin(m, fn, &im, &file));
    blt_status s = BLT_OK;
    for (int i = 0; s == BLT_OK && i < m->ncols; i++) s = flush_col(m, file, &m->cols[i]);
    s = edit_end(m, fn, &im, file, s);
    if (s == BLT_OK) {
        m->rows_file += m->rows_buf;
        m->rows_buf = 0;
    }
    return s;
}

blt_status blt_metrics_close(blt_metrics *m)
{
    if (!m) return BLT_OK;
    blt_status s = blt_metrics_flush(m);
    metrics_free(m);
    return s;
}

int64_t blt_metrics_rows(const blt_metrics *m) { return m ? m->rows_file + m->rows_buf : 0; }

static blt_status set_root_attr(hid_t file, const char *name, const char *str, double num)
{
    if (H5Aexists(file, name) > 0 && H5Adelete(file, name) < 0) return BLT_EIO;
    hid_t space = H5Screate(H5S_SCALAR), type = -1, attr = -1;
    blt_status s = BLT_EIO;
    if (space >= 0) {
        if (str) {
            type = H5Tcopy(H5T_C_S1);
            if (type >= 0 && H5Tset_size(type, strlen(str) + 1) >= 0 && H5Tset_strpad(type, H5T_STR_NULLTERM) >= 0)
                attr = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
            if (attr >= 0 && H5Awrite(attr, type, str) >= 0) s = BLT_OK;
        } else {
            attr = H5Acreate2(file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
            if (attr >= 0 && H5Awrite(attr, H5T_NATIVE_DOUBLE, &num) >= 0) s = BLT_OK;
        }
    }
    blt_h5u_close_id(attr);
    blt_h5u_close_id(type);
    blt_h5u_close_id(space);
    return s;
}

blt_status blt_metrics_annotate(blt_metrics *m, int n, const char *const *names, const char *const *strs,
                                const double *nums)
{
    const char *fn = "metrics:annotate";
    blt_h5u_init();
    if (!m) return blt_fail(BLT_ESTATE, "%s: the metrics file is closed", fn);
    for (int i = 0; i < n; i++) BLT_TRY(check_col_name(fn, m->path, names[i]));
    BLT_TRY(blt_metrics_flush(m)); /* the file exists, with every row so far */
    blt_h5u_image im;
    hid_t file;
    BLT_TRY(edit_begin(m, fn, &im, &file));
    blt_status s = BLT_OK;
    for (int i = 0; s == BLT_OK && i < n; i++)
        if (set_root_attr(file, names[i], strs[i], nums[i]) != BLT_OK)
            s = blt_fail(BLT_EIO, "%s: %s: cannot write attribute %s (%s)", fn, m->path, names[i], blt_h5u_msg());
    s = edit_end(m, fn, &im, file, s);
    return s;
}

blt_status blt_metrics_truncate(blt_metrics *m, int64_t rows)
{
    const char *fn = "metrics:truncate";
    blt_h5u_init();
    if (!m) return blt_fail(BLT_ESTATE, "%s: the metrics file is closed", fn);
    if (rows < 0) return blt_fail(BLT_EINVAL, "%s: %s: negative row count %lld", fn, m->path, (long long)rows);
    BLT_TRY(blt_metrics_flush(m));
    if (rows >= m->rows_file) return BLT_OK;
    blt_h5u_image im;
    hid_t file;
    BLT_TRY(edit_begin(m, fn, &im, &file));
    blt_status s = BLT_OK;
    hsize_t cur = (hsize_t)rows;
    for (int i = 0; s == BLT_OK && i < m->ncols; i++) {
        hid_t d = H5Dopen2(file, m->cols[i].name, H5P_DEFAULT);
        if (d < 0 || H5Dset_extent(d, &cur) < 0)
            s = blt_fail(BLT_EIO, "%s: %s: cannot shrink column %s (%s)", fn, m->path, m->cols[i].name, blt_h5u_msg());
        blt_h5u_close_id(d);
    }
    s = edit_end(m, fn, &im, file, s);
    if (s == BLT_OK) m->rows_file = rows;
    return s;
}
