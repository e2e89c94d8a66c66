#include "status.h"
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char errbuf[1024];

blt_status blt_fail(blt_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return code;
}

const char *blt_errmsg(void) { return errbuf[0] ? errbuf : "unknown error"; }

char *blt_fmt_shape(char *buf, int cap, int ndim, const int64_t *shape)
{
    int n = snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}
