/* The HDF5 helpers shared by h5io.c (checkpoints) and h5metrics.c (metrics files):
 * error messages, library setup, closing ids, file access properties. */
#include "h5util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    char *buf = data;
    (void)n;
    if (!buf[0] && e->desc && e->desc[0]) snprintf(buf, 300, "%s", e->desc);
    return 0;
}

/* The innermost message of the HDF5 error stack, then clears the stack. */
const char *blt_h5u_msg(void)
{
    static _Thread_local char buf[300];
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    if (!buf[0]) snprintf(buf, sizeof buf, "HDF5 error");
    return buf;
}

void blt_h5u_init(void)
{
    static int done;
    if (!done) {
        H5open();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        /* a file must not make HDF5 load a filter plugin (a shared library) */
        H5PLset_loading_state(0);
        done = 1;
    }
    H5Eclear2(H5E_DEFAULT);
}

void blt_h5u_close_id(hid_t id)
{
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

hid_t blt_h5u_fapl(int locking)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG); /* closing the file closes everything in it */
#if H5_VERSION_GE(1, 10, 7)
    /* locking on, but a file system without locks (NFS, Lustre) is no error */
    H5Pset_file_locking(fapl, locking ? 1 : 0, 1);
#else
    (void)locking;
#endif
    return fapl;
}

char *blt_h5u_dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
