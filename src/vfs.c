/* vfs.c - a thin SQLite VFS over the default one that writes each WAL commit with one pwrite.
 *
 * SQLite appends a commit to the WAL as two writes per page (a 24-byte frame header, then the
 * page). On this machine a write system call costs 5-10 us, so a query receipt (~30 pages)
 * spent most of its time entering the kernel. Here writes to a WAL file that continue the
 * previous one are collected in a buffer and written together before anything can depend on
 * them:
 *   - with the commit frame: a frame header (the one 24-byte write SQLite makes) whose
 *     "database size" field is not zero marks the last frame of a commit; the write of its
 *     page flushes the buffer and returns the outcome, so a failure (a full disk) fails the
 *     COMMIT before the commit is published in the WAL index, exactly where the default VFS
 *     would have failed;
 *   - before any other operation on the WAL file (read, sync, truncate, size, close, lock,
 *     file control), a write that does not continue the buffer, or a full buffer;
 *   - as a safety net, before the connection publishes anything through the database file's
 *     shared memory (xShmBarrier, xShmLock; the WAL file is found from the database file with
 *     sqlite3_database_file_object).
 * After the commit frame, writes of the same commit (checksum rewrites of frames written
 * twice, padding frames under synchronous=FULL) go straight through until the commit is
 * published, so their errors fail the COMMIT as they would with the default VFS. An unlock
 * drops what is still buffered (it was never committed) and always unlocks.
 * So a COMMIT returns only after its frames are in the file, as with the default VFS, and a
 * crash before that leaves a commit without its commit frame, which recovery ignores, as
 * ever. Everything but WAL writes goes straight to the default VFS. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define WAL_BUF_BYTES (1024 * 1024)
#define WAL_WRITE_MAX (120 * 1024) /* the unix VFS writes at most 128 KiB - 1 bytes per call */
#define WAL_FRAME_HDR 24 /* bytes of a WAL frame header (sqlite's wal.c, file format 3007000) */

struct sfile {
    sqlite3_file base;     /* our methods */
    sqlite3_file *real;    /* the default VFS's file, allocated right after this struct */
    int is_wal;
    struct sfile *wal;     /* on a main database file: its WAL, once opened */
    struct sfile *main;    /* on a WAL file: its database */
    unsigned char *buf;    /* WAL only: pending bytes for offset [off, off + len) */
    sqlite3_int64 off;
    size_t len;
    int commit_next;       /* the last write was a commit frame's header */
    int passthru;          /* the commit frame is written: until the commit is published,
                            * write through (checksum rewrites, padding frames), so that
                            * every error reaches walFrames, which can still fail the COMMIT */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim_vfs;

static int flush(struct sfile *f)
{
    int rc = SQLITE_OK;
    for (size_t done = 0; rc == SQLITE_OK && done < f->len; done += WAL_WRITE_MAX) {
        size_t n = f->len - done < WAL_WRITE_MAX ? f->len - done : WAL_WRITE_MAX;
        rc = f->real->pMethods->xWrite(f->real, f->buf + done, (int)n,
                                       f->off + (sqlite3_int64)done);
    }
    f->len = 0;
    return rc;
}

static int x_close(sqlite3_file *pf)
{
    struct sfile *f = (struct sfile *)pf;
    int rc = f->is_wal ? flush(f) : SQLITE_OK, rc2;
    if (f->is_wal && f->main != NULL && f->main->wal == f)
        f->main->wal = NULL;
    if (!f->is_wal && f->wal != NULL)
        f->wal->main = NULL;
    free(f->buf);
    f->buf = NULL;
    rc2 = f->real->pMethods->xClose(f->real);
    return rc != SQLITE_OK ? rc : rc2;
}

static int x_read(sqlite3_file *pf, void *p, int n, sqlite3_int64 off)
{
    struct sfile *f = (struct sfile *)pf;
    if (f->is_wal) {
        int rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    return f->real->pMethods->xRead(f->real, p, n, off);
}

static int x_write(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off)
{
    struct sfile *f = (struct sfile *)pf;
    if (!f->is_wal || f->passthru)
        return f->real->pMethods->xWrite(f->real, p, n, off);
    if (f->len > 0 && (off != f->off + (sqlite3_int64)f->len || f->len + (size_t)n > WAL_BUF_BYTES)) {
        int rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (f->buf == NULL || (size_t)n > WAL_BUF_BYTES) /* no buffer, or too big for one */
        return f->real->pMethods->xWrite(f->real, p, n, off);
    if (f->len == 0)
        f->off = off;
    memcpy(f->buf + f->len, p, (size_t)n);
    f->len += (size_t)n;
    if (n == WAL_FRAME_HDR) { /* bytes 4..7: the database size after a commit, else 0 */
        const unsigned char *h = p;
        f->commit_next = (h[4] | h[5] | h[6] | h[7]) != 0;
        return SQLITE_OK;
    }
    if (f->commit_next) { /* the commit frame's page: the commit is complete */
        f->commit_next = 0;
        f->passthru = 1;
        return flush(f);
    }
    return SQLITE_OK;
}

/* Every other file operation: flush a WAL file's buffer first. */
#define FLUSHED(f)                                                                             \
    do {                                                                                       \
        if ((f)->is_wal) {                                                                     \
            int frc_ = flush(f);                                                               \
            if (frc_ != SQLITE_OK)                                                             \
                return frc_;                                                                   \
        }                                                                                      \
    } while (0)

static int x_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    struct sfile *f = (struct sfile *)pf;
    FLUSHED(f);
    return f->real->pMethods->xTruncate(f->real, size);
}

static int x_sync(sqlite3_file *pf, int flags)
{
    struct sfile *f = (struct sfile *)pf;
    FLUSHED(f);
    return f->real->pMethods->xSync(f->real, flags);
}

static int x_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    struct sfile *f = (struct sfile *)pf;
    FLUSHED(f);
    return f->real->pMethods->xFileSize(f->real, size);
}

static int x_lock(sqlite3_file *pf, int lock)
{
    struct sfile *f = (struct sfile *)pf;
    FLUSHED(f);
    return f->real->pMethods->xLock(f->real, lock);
}

static int x_unlock(sqlite3_file *pf, int lock)
{
    struct sfile *f = (struct sfile *)pf;
    FLUSHED(f);
    return f->real->pMethods->xUnlock(f->real, lock);
}

static int x_check_reserved(sqlite3_file *pf, int *out)
{
    struct sfile *f = (struct sfile *)pf;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int x_file_control(sqlite3_file *pf, int op, void *arg)
{
    struct sfile *f = (struct sfile *)pf;
    FLUSHED(f);
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int x_sector_size(sqlite3_file *pf)
{
    struct sfile *f = (struct sfile *)pf;
    return f->real->pMethods->xSectorSize(f->real);
}

static int x_device_characteristics(sqlite3_file *pf)
{
    struct sfile *f = (struct sfile *)pf;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int x_shm_map(sqlite3_file *pf, int pg, int pgsz, int extend, void volatile **pp)
{
    struct sfile *f = (struct sfile *)pf;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int x_shm_lock(sqlite3_file *pf, int offset, int n, int flags)
{
    struct sfile *f = (struct sfile *)pf;
    if (f->wal != NULL) {
        f->wal->passthru = 0;
        if (flags & SQLITE_SHM_UNLOCK) {
            /* SQLite ignores unlock errors, so an unlock must always happen; whatever is still
             * buffered here was never committed (a commit flushes with its commit frame) */
            f->wal->len = 0;
            f->wal->commit_next = 0;
        } else {
            int rc = flush(f->wal); /* never take a lock with writes pending */
            if (rc != SQLITE_OK)
                return rc;
        }
    }
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *pf)
{
    struct sfile *f = (struct sfile *)pf;
    /* the commit is about to become visible: its frames must be in the WAL file first. A
     * commit flushes with its commit frame and writes through after it, so nothing can be
     * pending here; if something is and cannot be written, publishing would hand readers
     * frames that are not there, and the barrier cannot fail: stop instead. */
    if (f->wal != NULL) {
        f->wal->passthru = 0;
        if (f->wal->len > 0 && flush(f->wal) != SQLITE_OK) {
            fputs("steward: a WAL write failed while a commit was being published\n", stderr);
            abort();
        }
    }
    f->real->pMethods->xShmBarrier(f->real);
}

static int x_shm_unmap(sqlite3_file *pf, int del)
{
    struct sfile *f = (struct sfile *)pf;
    return f->real->pMethods->xShmUnmap(f->real, del);
}

static int x_fetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp)
{
    struct sfile *f = (struct sfile *)pf;
    FLUSHED(f);
    return f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int x_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    struct sfile *f = (struct sfile *)pf;
    return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods shim_methods = {
    3,           x_close,     x_read,          x_write,
    x_truncate,  x_sync,      x_file_size,     x_lock,
    x_unlock,    x_check_reserved, x_file_control, x_sector_size,
    x_device_characteristics, x_shm_map, x_shm_lock, x_shm_barrier,
    x_shm_unmap, x_fetch,     x_unfetch,
};

static int x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *pf, int flags,
                  int *out_flags)
{
    struct sfile *f = (struct sfile *)pf;
    int rc;

    (void)vfs;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (f->real->pMethods != NULL)
            f->real->pMethods->xClose(f->real);
        f->base.pMethods = NULL; /* SQLite then does not call xClose */
        return rc;
    }
    if ((flags & SQLITE_OPEN_WAL) && name != NULL) {
        struct sfile *m = (struct sfile *)sqlite3_database_file_object(name);
        f->is_wal = 1;
        f->buf = malloc(WAL_BUF_BYTES); /* NULL: writes go straight through */
        if (m != NULL && m->base.pMethods == &shim_methods) {
            f->main = m;
            m->wal = f;
        }
    }
    f->base.pMethods = &shim_methods;
    return SQLITE_OK;
}

/* Everything below goes straight to the default VFS. */
static int x_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int x_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int x_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static void *x_dl_open(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return real_vfs->xDlOpen(real_vfs, name);
}
static void x_dl_error(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    real_vfs->xDlError(real_vfs, n, msg);
}
static void (*x_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return real_vfs->xDlSym(real_vfs, h, sym);
}
static void x_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    real_vfs->xDlClose(real_vfs, h);
}
static int x_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int x_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}
static int x_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, out);
}
static int x_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xGetLastError(real_vfs, n, out);
}
static int x_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int store_vfs_register(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (real_vfs == NULL || real_vfs->iVersion < 2)
        return SQLITE_ERROR;
    memset(&shim_vfs, 0, sizeof shim_vfs);
    shim_vfs.iVersion = 2;
    shim_vfs.szOsFile = (int)sizeof(struct sfile) + real_vfs->szOsFile;
    shim_vfs.mxPathname = real_vfs->mxPathname;
    shim_vfs.zName = STORE_VFS;
    shim_vfs.xOpen = x_open;
    shim_vfs.xDelete = x_delete;
    shim_vfs.xAccess = x_access;
    shim_vfs.xFullPathname = x_full_pathname;
    shim_vfs.xDlOpen = x_dl_open;
    shim_vfs.xDlError = x_dl_error;
    shim_vfs.xDlSym = x_dl_sym;
    shim_vfs.xDlClose = x_dl_close;
    shim_vfs.xRandomness = x_randomness;
    shim_vfs.xSleep = x_sleep;
    shim_vfs.xCurrentTime = x_current_time;
    shim_vfs.xGetLastError = x_last_error;
    shim_vfs.xCurrentTimeInt64 = x_current_time64;
    return sqlite3_vfs_register(&shim_vfs, 0);
}
