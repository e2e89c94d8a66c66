/* Writing a file without touching any other (safefile.c): the bytes go to a new
 * temporary file beside the target, created exclusively and never through a
 * symbolic link, which is then renamed over the target. A symbolic link at the
 * target is replaced itself (rename never follows it); a failed write (disk full,
 * read-only, a file-size limit) leaves the target as it was and no temporary file. */
#ifndef BLT_SAFEFILE_H
#define BLT_SAFEFILE_H
#include <stddef.h>
#include "status.h"

/* Creates a new file "<path>.tmp.<pid>" (or ".tmp.<pid>.<k>" when that name is
 * taken) with O_EXCL | O_NOFOLLOW, open for writing. Returns its descriptor and
 * the malloc'ed name in *tmp, or -1 with errno set (*tmp NULL). */
int blt_tmp_create(const char *path, char **tmp);

/* Writes n bytes to fd, retrying short writes; 0, or -1 with errno set. */
int blt_write_all(int fd, const void *data, size_t n);

/* fsyncs the folder that holds path (a rename is durable once its folder is). */
void blt_fsync_dir(const char *path);

/* path gets data[0..n) through a temporary file renamed over it; sync: fsync the
 * file and its folder. On failure the message names fn, path, the step that failed
 * and the system's reason, e.g. "write_file: runs/x/result.json: write of
 * runs/x/result.json.tmp.42 failed (No space left on device)". */
blt_status blt_write_atomic(const char *fn, const char *path, const void *data, size_t n, int sync);

#endif
