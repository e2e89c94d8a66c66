/* Files written beside their target and renamed over it (safefile.h). */
#include "safefile.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int blt_tmp_create(const char *path, char **tmp)
{
    *tmp = NULL;
    size_t n = strlen(path) + 48;
    char *name = malloc(n);
    if (!name) {
        errno = ENOMEM;
        return -1;
    }
    /* O_EXCL: a name that exists, a symbolic link included, is never opened; the pid
     * keeps two processes writing the same target apart, k a name already taken */
    for (int k = 0; k < 100; k++) {
        if (k == 0) snprintf(name, n, "%s.tmp.%ld", path, (long)getpid());
        else snprintf(name, n, "%s.tmp.%ld.%d", path, (long)getpid(), k);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0) {
            *tmp = name;
            return fd;
        }
        if (errno != EEXIST) break;
    }
    int err = errno;
    free(name);
    errno = err;
    return -1;
}

int blt_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void blt_fsync_dir(const char *path)
{
    size_t n = strlen(path);
    char *dir = malloc(n + 2);
    if (!dir) return;
    memcpy(dir, path, n + 1);
    char *sl = strrchr(dir, '/');
    if (sl == dir) sl[1] = 0;
    else if (sl) *sl = 0;
    int fd = open(sl ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

blt_status blt_write_atomic(const char *fn, const char *path, const void *data, size_t n, int sync)
{
    if (!path || !path[0]) return blt_fail(BLT_EINVAL, "%s: empty path", fn);
    char *tmp;
    int fd = blt_tmp_create(path, &tmp);
    if (fd < 0)
        return blt_fail(BLT_EIO, "%s: %s: cannot create a temporary file beside it (%s)", fn, path, strerror(errno));
    const char *step = "write";
    int ok = blt_write_all(fd, data, n) == 0;
    if (ok && sync) { step = "fsync"; ok = fsync(fd) == 0; }
    int err = errno;
    /* close reports a delayed write error (NFS, some full disks) */
    if (close(fd) != 0 && ok) { step = "close"; ok = 0; err = errno; }
    if (ok) { step = "rename"; ok = rename(tmp, path) == 0; err = errno; }
    if (!ok) {
        unlink(tmp);
        blt_status s = blt_fail(BLT_EIO, "%s: %s: %s of %s failed (%s)", fn, path, step, tmp, strerror(err));
        free(tmp);
        return s;
    }
    free(tmp);
    if (sync) blt_fsync_dir(path);
    return BLT_OK;
}
