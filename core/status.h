/* Status codes and the error message of the last failure.
 * The C core never raises and never exits on a user's mistake: every entry point
 * returns a blt_status and, on failure, leaves a message naming the function, the
 * argument and the shapes. Only the Lua binding turns it into a Lua error. */
#ifndef BLT_STATUS_H
#define BLT_STATUS_H
#include <stdint.h>

typedef enum {
    BLT_OK = 0,
    BLT_EINVAL,   /* bad argument: shape, type, range */
    BLT_ENOMEM,   /* allocation failed */
    BLT_EIO,      /* file missing, unreadable, short read */
    BLT_ESTATE,   /* wrong state: released storage, backward twice */
    BLT_EFORMAT   /* corrupt or incompatible file */
} blt_status;

/* Records a formatted message (thread-local) and returns code. */
blt_status blt_fail(blt_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *blt_errmsg(void);

/* Writes "[2,3,4]" into buf; returns buf. Handy in messages. */
char *blt_fmt_shape(char *buf, int cap, int ndim, const int64_t *shape);

#define BLT_TRY(expr) do { blt_status s_ = (expr); if (s_ != BLT_OK) return s_; } while (0)

#endif
