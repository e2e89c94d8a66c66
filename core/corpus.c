/* Byte corpora over mmap'ed files (see corpus.h for the stream and split rules). */
#include "corpus.h"
#include "ids.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *path;
    const unsigned char *data; /* mapping of size bytes */
    int64_t size;              /* > 0 */
    int64_t start;             /* stream position of the first byte; EOS sits at start + size */
} doc;

struct blt_corpus {
    doc *docs;
    int64_t ndocs, cap;
    int64_t bytes, stream, train, val;
    double val_fraction;
    int sep;      /* the byte that ends a document inside a file, -1: none */
    int64_t seps; /* how many the files hold */
};

#define FN "data.open"

static void install_sigbus(void);

void blt_corpus_close(blt_corpus *c)
{
    if (!c) return;
    for (int64_t i = 0; i < c->ndocs; i++) {
        if (c->docs[i].data) munmap((void *)c->docs[i].data, (size_t)c->docs[i].size);
        free(c->docs[i].path);
    }
    free(c->docs);
    free(c);
}

/* Maps one regular file of known size (> 0) and appends it as a document. */
static blt_status add_file(blt_corpus *c, const char *path, int64_t size)
{
    if ((uint64_t)size > (uint64_t)SIZE_MAX) return blt_fail(BLT_EIO, FN ": '%s' is too large to map", path);
    if (c->ndocs == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 16;
        doc *d = realloc(c->docs, (size_t)cap * sizeof *d);
        if (!d) return blt_fail(BLT_ENOMEM, FN ": out of memory listing '%s'", path);
        c->docs = d;
        c->cap = cap;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* replaced by a FIFO since stat: fails, not blocks */
    if (fd < 0) return blt_fail(BLT_EIO, FN ": cannot open '%s': %s", path, strerror(errno));
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    /* The sampler reads short windows at random offsets: without this, every page
     * fault reads ahead (often hundreds of kB) it will not use. The validation
     * pass asks for its ranges ahead with MADV_WILLNEED instead. */
    if (p != MAP_FAILED) madvise(p, (size_t)size, MADV_RANDOM);
    if (p == MAP_FAILED)
        return blt_fail(BLT_EIO, FN ": cannot map '%s' (%lld bytes): %s%s", path, (long long)size, strerror(err),
                        err == ENOMEM ? " (too many files? each file is one mapping; see vm.max_map_count)" : "");
    char *copy = strdup(path);
    if (!copy) {
        munmap(p, (size_t)size);
        return blt_fail(BLT_ENOMEM, FN ": out of memory listing '%s'", path);
    }
    doc *d = &c->docs[c->ndocs++];
    d->path = copy;
    d->data = p;
    d->size = size;
    d->start = c->stream;
    c->bytes += size;
    c->stream += size + 1; /* + EOS */
    return BLT_OK;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Adds the regular files under dir (sorted, depth first, dot entries skipped). */
static blt_status walk_dir(blt_corpus *c, const char *dir, int depth)
{
    if (depth > 64) return blt_fail(BLT_EINVAL, FN ": directories nested more than 64 deep at '%s'", dir);
    DIR *d = opendir(dir);
    if (!d) return blt_fail(BLT_EIO, FN ": cannot read directory '%s': %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) { closedir(d); free_names(names, n); return blt_fail(BLT_ENOMEM, FN ": out of memory reading '%s'", dir); }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            closedir(d);
            free_names(names, n);
            return blt_fail(BLT_ENOMEM, FN ": out of memory reading '%s'", dir);
        }
        n++;
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (err) { free_names(names, n); return blt_fail(BLT_EIO, FN ": cannot read directory '%s': %s", dir, strerror(err)); }
    if (n > 1) qsort(names, n, sizeof *names, cmp_names);

    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] == '/';
    blt_status s = BLT_OK;
    for (size_t i = 0; i < n && s == BLT_OK; i++) {
        size_t len = dl + 1 + strlen(names[i]) + 1;
        char *p = malloc(len);
        if (!p) { s = blt_fail(BLT_ENOMEM, FN ": out of memory reading '%s'", dir); break; }
        snprintf(p, len, slash ? "%s%s" : "%s/%s", dir, names[i]);
        struct stat st;
        if (lstat(p, &st) != 0) {
            s = blt_fail(BLT_EIO, FN ": cannot stat '%s': %s", p, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            s = walk_dir(c, p, depth + 1);
        } else {
            int link = S_ISLNK(st.st_mode);
            if (link && stat(p, &st) != 0) /* a dangling link is a missing file */
                s = blt_fail(BLT_EIO, FN ": '%s' is a broken symbolic link: %s", p, strerror(errno));
            else if (S_ISREG(st.st_mode) && st.st_size > 0)
                s = add_file(c, p, (int64_t)st.st_size);
            /* empty files, links to directories, fifos, sockets, devices: skipped */
        }
        free(p);
    }
    free_names(names, n);
    return s;
}

static blt_status add_path(blt_corpus *c, const char *path)
{
    if (!path || !*path) return blt_fail(BLT_EINVAL, FN ": empty path");
    struct stat st;
    if (stat(path, &st) != 0) return blt_fail(BLT_EIO, FN ": '%s': %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        if (st.st_size == 0) return blt_fail(BLT_EIO, FN ": '%s' is empty", path);
        return add_file(c, path, (int64_t)st.st_size);
    }
    if (S_ISDIR(st.st_mode)) {
        int64_t before = c->ndocs;
        BLT_TRY(walk_dir(c, path, 0));
        if (c->ndocs == before)
            return blt_fail(BLT_EIO, FN ": directory '%s' holds no non-empty regular file", path);
        return BLT_OK;
    }
    return blt_fail(BLT_EINVAL, FN ": '%s' is neither a regular file nor a directory", path);
}

/* Counts the separator bytes of every file (read once, sequentially, at open). */
static blt_status count_separators(blt_corpus *c);

blt_status blt_corpus_open_opts(blt_corpus **out, int npaths, const char *const *paths, const blt_corpus_opts *o)
{
    if (!out) return blt_fail(BLT_EINVAL, FN ": out is NULL");
    *out = NULL;
    if (!o) return blt_fail(BLT_EINVAL, FN ": options are NULL");
    if (npaths < 1 || !paths) return blt_fail(BLT_EINVAL, FN ": no path given");
    if (!(o->val_fraction >= 0.0 && o->val_fraction <= 1.0))
        return blt_fail(BLT_EINVAL, FN ": val_fraction %g must be in [0, 1]", o->val_fraction);
    if (o->separator < -1 || o->separator > 255)
        return blt_fail(BLT_EINVAL, FN ": separator %d must be a byte (0..255) or -1 (none)", o->separator);
    if (o->val_files < 0) return blt_fail(BLT_EINVAL, FN ": val_files %lld must be >= 0", (long long)o->val_files);
    install_sigbus();
    blt_corpus *c = calloc(1, sizeof *c);
    if (!c) return blt_fail(BLT_ENOMEM, FN ": out of memory");
    c->sep = o->separator;
    for (int i = 0; i < npaths; i++) {
        blt_status s = add_path(c, paths[i]);
        if (s != BLT_OK) { blt_corpus_close(c); return s; }
    }
    if (o->val_files > c->ndocs) {
        blt_status s = blt_fail(BLT_EINVAL, FN ": val_files %lld is more than the %lld files opened",
                                (long long)o->val_files, (long long)c->ndocs);
        blt_corpus_close(c);
        return s;
    }
    if (c->sep >= 0) {
        blt_status s = count_separators(c);
        if (s != BLT_OK) { blt_corpus_close(c); return s; }
    }
    if (o->val_files > 0) { /* by files: the boundary is a document boundary */
        c->val = c->stream - c->docs[c->ndocs - o->val_files].start;
        c->val_fraction = (double)c->val / (double)c->stream;
    } else {
        c->val_fraction = o->val_fraction;
        c->val = (int64_t)floor(o->val_fraction * (double)c->stream);
        if (c->val > c->stream) c->val = c->stream;
    }
    c->train = c->stream - c->val;
    *out = c;
    return BLT_OK;
}

blt_status blt_corpus_open(blt_corpus **out, int npaths, const char *const *paths, double val_fraction)
{
    blt_corpus_opts o = {.val_fraction = val_fraction, .val_files = 0, .separator = -1};
    return blt_corpus_open_opts(out, npaths, paths, &o);
}

blt_status blt_corpus_get_info(const blt_corpus *c, blt_corpus_info *info)
{
    if (!c || !info) return blt_fail(BLT_EINVAL, "data.info: corpus or info is NULL");
    info->bytes = c->bytes - c->seps; /* a separator is no document's byte */
    info->documents = c->ndocs + c->seps;
    info->separator = c->sep;
    info->files = c->ndocs;
    info->stream = c->stream;
    info->train = c->train;
    info->val = c->val;
    info->val_fraction = c->val_fraction;
    return BLT_OK;
}

blt_status blt_corpus_document(const blt_corpus *c, int64_t i, const char **path, int64_t *start, int64_t *size)
{
    if (!c) return blt_fail(BLT_EINVAL, "data.document: corpus is NULL");
    if (i < 0 || i >= c->ndocs)
        return blt_fail(BLT_EINVAL, "data.document: index %lld out of range [0, %lld)", (long long)i,
                        (long long)c->ndocs);
    if (path) *path = c->docs[i].path;
    if (start) *start = c->docs[i].start;
    if (size) *size = c->docs[i].size;
    return BLT_OK;
}

/* The document holding stream position pos (0 <= pos < stream). */
static int64_t find_doc(const blt_corpus *c, int64_t pos)
{
    int64_t lo = 0, hi = c->ndocs - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (c->docs[mid].start <= pos) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Unchecked: [pos, pos + n) inside the stream. */
static void read_ids(const blt_corpus *c, int64_t pos, int64_t n, int32_t *out)
{
    if (n <= 0) return;
    int64_t d = find_doc(c, pos);
    while (n > 0) {
        const doc *dc = &c->docs[d];
        int64_t off = pos - dc->start;
        if (off < dc->size) {
            int64_t k = dc->size - off < n ? dc->size - off : n;
            const unsigned char *src = dc->data + off;
            if (c->sep < 0) {
                for (int64_t i = 0; i < k; i++) out[i] = (int32_t)src[i] + BLT_ID_OFFSET;
            } else { /* the separator ends a document: EOS in its place */
                const int sep = c->sep;
                for (int64_t i = 0; i < k; i++) out[i] = src[i] == sep ? BLT_ID_EOS : (int32_t)src[i] + BLT_ID_OFFSET;
            }
            out += k;
            pos += k;
            n -= k;
        } else { /* off == size: the document's EOS */
            *out++ = BLT_ID_EOS;
            pos++;
            n--;
            d++;
        }
    }
}

/* A file truncated while mapped turns reads past its new end into SIGBUS. Reads
 * from the mappings run under a guard: the handler jumps back to it and the read
 * fails with a message, instead of the process dying. A SIGBUS outside a guarded
 * read goes to the handler installed before ours. */
static _Thread_local sigjmp_buf *volatile bus_env;
static struct sigaction old_bus; /* the handler before ours (ASan's, or the default) */

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (bus_env) siglongjmp(*bus_env, 1);
    /* not ours: give it back to the previous handler. A fault re-runs the faulting
     * access when we return and reaches it; a sent signal is raised again. */
    sigaction(SIGBUS, &old_bus, NULL);
    if (si->si_code <= 0) raise(sig);
}

static void install_sigbus(void)
{
    static int done;
    if (done) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old_bus);
    done = 1;
}

/* Names the first document over [pos, pos + n) whose file no longer has its mapped size. */
static blt_status changed_file(const blt_corpus *c, int64_t pos, int64_t n, const char *fn)
{
    for (int64_t d = find_doc(c, pos); d < c->ndocs && c->docs[d].start < pos + n; d++) {
        struct stat st;
        if (stat(c->docs[d].path, &st) != 0 || (int64_t)st.st_size != c->docs[d].size)
            return blt_fail(BLT_EIO, "%s: corpus file '%s' changed under the run (mapped %lld bytes, now %lld); "
                            "reopen the corpus", fn, c->docs[d].path, (long long)c->docs[d].size,
                            stat(c->docs[d].path, &st) ? -1LL : (long long)st.st_size);
    }
    return blt_fail(BLT_EIO, "%s: reading the corpus at stream position %lld failed (SIGBUS: a file was "
                    "truncated or its disk failed); reopen the corpus", fn, (long long)pos);
}

/* read_ids under the SIGBUS guard. */
static blt_status guarded_read(const blt_corpus *c, int64_t pos_, int64_t n_, int32_t *out_, const char *fn)
{
    /* volatile: their values are read again after the jump back */
    volatile int64_t pos = pos_, n = n_;
    int32_t *volatile out = out_;
    sigjmp_buf env;
    if (sigsetjmp(env, 1)) {
        bus_env = NULL;
        return changed_file(c, pos, n, fn);
    }
    bus_env = &env;
    read_ids(c, pos, n, out);
    bus_env = NULL;
    return BLT_OK;
}

/* Separators in [p, p + n) of a mapping, under the SIGBUS guard. */
static blt_status guarded_count(const unsigned char *p_, int64_t n, int sep, int64_t *count, const char *path_)
{
    /* volatile: read again after the jump back */
    const unsigned char *volatile p = p_;
    const char *volatile path = path_;
    volatile int64_t k = 0;
    sigjmp_buf env;
    if (sigsetjmp(env, 1)) {
        bus_env = NULL;
        return blt_fail(BLT_EIO, FN ": reading '%s' failed (SIGBUS: the file shrank while it was opened, or its "
                        "disk failed)", path);
    }
    bus_env = &env;
    for (const unsigned char *q = p, *end = p + n; (q = memchr(q, sep, (size_t)(end - q))); q++) k++;
    bus_env = NULL;
    *count = k;
    return BLT_OK;
}

static blt_status count_separators(blt_corpus *c)
{
    c->seps = 0;
    for (int64_t d = 0; d < c->ndocs; d++) {
        const doc *dc = &c->docs[d];
        int64_t k = 0;
        /* one sequential pass: read ahead for it, then back to random access */
        madvise((void *)dc->data, (size_t)dc->size, MADV_SEQUENTIAL);
        blt_status s = guarded_count(dc->data, dc->size, c->sep, &k, dc->path);
        madvise((void *)dc->data, (size_t)dc->size, MADV_RANDOM);
        BLT_TRY(s);
        c->seps += k;
    }
    return BLT_OK;
}

/* Asks the kernel to read stream positions [pos, pos + n) ahead (a hint; errors
 * are ignored). The mappings are MADV_RANDOM, so sequential readers say what they
 * will need. */
static void will_need(const blt_corpus *c, int64_t pos, int64_t n)
{
    if (n <= 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    for (int64_t d = find_doc(c, pos); d < c->ndocs && c->docs[d].start < pos + n; d++) {
        const doc *dc = &c->docs[d];
        int64_t lo = pos > dc->start ? pos - dc->start : 0;
        int64_t hi = pos + n - dc->start < dc->size ? pos + n - dc->start : dc->size;
        if (hi <= lo) continue;
        int64_t a = lo / pg * pg;
        madvise((void *)(dc->data + a), (size_t)(hi - a), MADV_WILLNEED);
    }
}

blt_status blt_corpus_ids(const blt_corpus *c, int64_t pos, int64_t n, int32_t *out)
{
    if (!c || (!out && n > 0)) return blt_fail(BLT_EINVAL, "data.ids: corpus or out is NULL");
    if (pos < 0 || n < 0 || pos > c->stream || n > c->stream - pos)
        return blt_fail(BLT_EINVAL, "data.ids: %lld ids from position %lld: outside the stream [0, %lld)",
                        (long long)n, (long long)pos, (long long)c->stream); /* pos + n may overflow */
    return guarded_read(c, pos, n, out, "data.ids");
}

blt_status blt_corpus_sample(const blt_corpus *c, blt_rng *r, int64_t B, int64_t N, int32_t *out)
{
    if (!c || !r || !out) return blt_fail(BLT_EINVAL, "data.sample: corpus, rng or out is NULL");
    if (B < 1) return blt_fail(BLT_EINVAL, "data.sample: batch %lld must be >= 1", (long long)B);
    if (N < 2) return blt_fail(BLT_EINVAL, "data.sample: seq_len %lld must be >= 2 (BOS and one id)", (long long)N);
    if (c->train < N - 1)
        return blt_fail(BLT_EINVAL,
                        "data.sample: seq_len %lld needs %lld train ids per row but the train split holds %lld",
                        (long long)N, (long long)(N - 1), (long long)c->train);
    uint64_t span = (uint64_t)(c->train - (N - 1) + 1);
    for (int64_t b = 0; b < B; b++) {
        int64_t o = (int64_t)blt_rng_below(r, span);
        int32_t *row = out + b * N;
        row[0] = BLT_ID_BOS;
        BLT_TRY(guarded_read(c, o, N - 1, row + 1, "data.sample"));
    }
    return BLT_OK;
}

int64_t blt_corpus_val_count(const blt_corpus *c, int64_t N)
{
    if (!c || N < 2) return 0;
    return (c->val + (N - 2)) / (N - 1);
}

blt_status blt_corpus_val_windows(const blt_corpus *c, int64_t first, int64_t B, int64_t N, int32_t *out, int64_t *len)
{
    if (!c || !out) return blt_fail(BLT_EINVAL, "data.val_windows: corpus or out is NULL");
    if (N < 2) return blt_fail(BLT_EINVAL, "data.val_windows: seq_len %lld must be >= 2", (long long)N);
    int64_t count = blt_corpus_val_count(c, N);
    if (B < 0 || first < 0 || first > count || B > count - first)
        return blt_fail(BLT_EINVAL, "data.val_windows: %lld windows from window %lld: outside [0, %lld) for seq_len %lld",
                        (long long)B, (long long)first, (long long)count, (long long)N); /* first + B may overflow */
    int64_t W = N - 1;
    if (B > 0) {
        int64_t lo = first * W, hi = (first + B) * W < c->val ? (first + B) * W : c->val;
        will_need(c, c->train + lo, hi - lo);
    }
    for (int64_t b = 0; b < B; b++) {
        int64_t k = first + b, lo = k * W;
        int64_t n = c->val - lo < W ? c->val - lo : W;
        int32_t *row = out + b * N;
        row[0] = BLT_ID_BOS;
        BLT_TRY(guarded_read(c, c->train + lo, n, row + 1, "data.val_windows"));
        for (int64_t i = n + 1; i < N; i++) row[i] = BLT_ID_PAD;
        if (len) len[b] = n + 1;
    }
    return BLT_OK;
}
