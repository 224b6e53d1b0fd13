// A SQLite VFS shim that hands a commit's WAL frames to the kernel in one write.
//
// Why: SQLite writes every WAL frame with two pwrite() calls (its 24-byte header,
// then the page). A /sign batch of ~8 records writes ~37 frames: 74 system calls
// before its fsync, ~0.27 ms of kernel time per commit on this paravirtualized
// VM, on the thread every registration waits for. Here the frames of a commit
// collect in memory, in the order SQLite writes them, and go to the WAL file in
// one write just before the commit's fsync.
//
// Loaded into better-sqlite3 as an extension (db.loadExtension), it registers
// the VFS "kiln-walbuf" as the process's default, wrapping the previous default
// ("unix"). Every connection opened after that goes through it, unchanged,
// until it runs `PRAGMA kiln_wal_buffer = 1`: only then are its WAL writes
// buffered. `PRAGMA kiln_wal_buffer` answers "<armed> <frame writes> <flushes>".
// Arm it only with synchronous=FULL (or EXTRA): the fsync before each commit is
// where a failed write surfaces, before the commit is published.
//
// When buffered bytes reach the file (so nothing can read a frame that is not
// there yet):
// - before the WAL is synced (with synchronous=FULL, every commit), read,
//   truncated, sized, closed or given a file-control;
// - before a write that does not continue the buffered run (SQLite rewriting a
//   frame of the same transaction), or that would take it past 120 KiB;
// - before the connection touches the WAL index (xShmBarrier, xShmLock,
//   xShmUnmap on the database file): a commit becomes visible to other
//   connections only through the WAL index, so its frames are in the file first,
//   whatever the synchronous setting.
// A failed write is returned by the call that flushed: the commit fails and
// SQLite rolls it back.
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#include <stdlib.h>
#include <string.h>

/* the unix VFS writes at most 128 KiB - 1 per call (seekAndWrite masks the length
   to 17 bits): a flush stays below that, so a batch of ~37 frames is two writes */
#define FLUSH_AT (120 * 1024)

typedef struct WbFile WbFile;
struct WbFile {
  sqlite3_file base;
  sqlite3_file *real; /* the wrapped VFS's file, allocated right after this struct */
  /* the database file: */
  WbFile *wal; /* its WAL while open */
  int armed;
  sqlite3_int64 frameWrites, flushes;
  /* a WAL file: */
  WbFile *db; /* the database file of the same connection */
  unsigned char *buf;
  sqlite3_int64 bufOffset;
  int bufLen, bufCap;
};

static sqlite3_vfs *realVfs;

#define REAL(f) (((WbFile *)(f))->real)
#define RM(f) (REAL(f)->pMethods)

static int flushWal(WbFile *w) {
  if (w == NULL || w->bufLen == 0) return SQLITE_OK;
  int rc = w->real->pMethods->xWrite(w->real, w->buf, w->bufLen, w->bufOffset);
  w->bufLen = 0;
  if (w->db) w->db->flushes++;
  return rc;
}

/* ---- methods shared by both kinds of file: forward, flushing a WAL first ---- */

static int wbClose(sqlite3_file *f) {
  WbFile *p = (WbFile *)f;
  int rc = flushWal(p);
  if (p->db) p->db->wal = NULL;
  if (p->wal) p->wal->db = NULL;
  int rc2 = RM(f)->xClose(p->real);
  free(p->buf);
  p->buf = NULL;
  return rc != SQLITE_OK ? rc : rc2;
}

static int wbRead(sqlite3_file *f, void *out, int amt, sqlite3_int64 off) {
  int rc = flushWal((WbFile *)f);
  return rc != SQLITE_OK ? rc : RM(f)->xRead(REAL(f), out, amt, off);
}

static int wbWrite(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off) {
  WbFile *p = (WbFile *)f;
  if (p->db == NULL || !p->db->armed) {
    int rc = flushWal(p);
    return rc != SQLITE_OK ? rc : RM(f)->xWrite(p->real, data, amt, off);
  }
  int rc = SQLITE_OK;
  if (p->bufLen > 0 && (off != p->bufOffset + p->bufLen || p->bufLen + amt > FLUSH_AT)) rc = flushWal(p);
  if (rc != SQLITE_OK) return rc;
  if (p->bufLen + amt > p->bufCap) {
    int cap = p->bufCap ? p->bufCap : 64 * 1024;
    while (cap < p->bufLen + amt) cap *= 2;
    unsigned char *grown = realloc(p->buf, cap);
    if (grown == NULL) { /* no memory for the buffer: write through */
      rc = flushWal(p);
      return rc != SQLITE_OK ? rc : RM(f)->xWrite(p->real, data, amt, off);
    }
    p->buf = grown;
    p->bufCap = cap;
  }
  if (p->bufLen == 0) p->bufOffset = off;
  memcpy(p->buf + p->bufLen, data, amt);
  p->bufLen += amt;
  p->db->frameWrites++;
  return SQLITE_OK;
}

static int wbTruncate(sqlite3_file *f, sqlite3_int64 size) {
  int rc = flushWal((WbFile *)f);
  return rc != SQLITE_OK ? rc : RM(f)->xTruncate(REAL(f), size);
}

static int wbSync(sqlite3_file *f, int flags) {
  WbFile *p = (WbFile *)f;
  int rc = flushWal(p->wal ? p->wal : p);
  return rc != SQLITE_OK ? rc : RM(f)->xSync(p->real, flags);
}

static int wbFileSize(sqlite3_file *f, sqlite3_int64 *size) {
  int rc = flushWal((WbFile *)f);
  return rc != SQLITE_OK ? rc : RM(f)->xFileSize(REAL(f), size);
}

static int wbLock(sqlite3_file *f, int level) { return RM(f)->xLock(REAL(f), level); }
static int wbUnlock(sqlite3_file *f, int level) { return RM(f)->xUnlock(REAL(f), level); }
static int wbCheckReservedLock(sqlite3_file *f, int *out) { return RM(f)->xCheckReservedLock(REAL(f), out); }

/* PRAGMA kiln_wal_buffer [= 0|1] reaches the database file as SQLITE_FCNTL_PRAGMA */
static int wbFileControl(sqlite3_file *f, int op, void *arg) {
  WbFile *p = (WbFile *)f;
  if (op == SQLITE_FCNTL_PRAGMA && p->db == NULL) {
    char **a = (char **)arg;
    if (sqlite3_stricmp(a[1], "kiln_wal_buffer") == 0) {
      if (a[2] != NULL) {
        int rc = flushWal(p->wal);
        if (rc != SQLITE_OK) return rc;
        p->armed = atoi(a[2]) != 0;
      }
      a[0] = sqlite3_mprintf("%d %lld %lld", p->armed, p->frameWrites, p->flushes);
      return SQLITE_OK;
    }
  }
  int rc = flushWal(p->db ? p : NULL); /* the WAL's own file-controls see its whole content */
  return rc != SQLITE_OK ? rc : RM(f)->xFileControl(p->real, op, arg);
}

static int wbSectorSize(sqlite3_file *f) { return RM(f)->xSectorSize(REAL(f)); }
static int wbDeviceCharacteristics(sqlite3_file *f) { return RM(f)->xDeviceCharacteristics(REAL(f)); }

/* the WAL index: publish buffered frames before the connection touches it */
static int wbShmMap(sqlite3_file *f, int region, int size, int extend, void volatile **out) {
  return RM(f)->xShmMap(REAL(f), region, size, extend, out);
}
static int wbShmLock(sqlite3_file *f, int offset, int n, int flags) {
  int rc = flushWal(((WbFile *)f)->wal);
  return rc != SQLITE_OK ? rc : RM(f)->xShmLock(REAL(f), offset, n, flags);
}
static void wbShmBarrier(sqlite3_file *f) {
  flushWal(((WbFile *)f)->wal); /* a failure resurfaces: the commit's own xSync or the next write fails */
  RM(f)->xShmBarrier(REAL(f));
}
static int wbShmUnmap(sqlite3_file *f, int deleteFlag) {
  int rc = flushWal(((WbFile *)f)->wal);
  return rc != SQLITE_OK ? rc : RM(f)->xShmUnmap(REAL(f), deleteFlag);
}
static int wbFetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **out) { return RM(f)->xFetch(REAL(f), off, amt, out); }
static int wbUnfetch(sqlite3_file *f, sqlite3_int64 off, void *ptr) { return RM(f)->xUnfetch(REAL(f), off, ptr); }

static const sqlite3_io_methods wbMethods = {
    3,         wbClose,       wbRead,         wbWrite,         wbTruncate,           wbSync,         wbFileSize,
    wbLock,    wbUnlock,      wbCheckReservedLock, wbFileControl, wbSectorSize, wbDeviceCharacteristics, wbShmMap,
    wbShmLock, wbShmBarrier,  wbShmUnmap,     wbFetch,         wbUnfetch,
};

static int wbOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *outFlags) {
  (void)vfs;
  WbFile *p = (WbFile *)f;
  memset(p, 0, sizeof *p);
  p->real = (sqlite3_file *)&p[1];
  int rc = realVfs->xOpen(realVfs, name, p->real, flags, outFlags);
  if (rc != SQLITE_OK || p->real->pMethods == NULL) {
    p->base.pMethods = NULL;
    return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
  }
  if (p->real->pMethods->iVersion < 3) { /* the wrapped VFS lacks WAL-index or fetch methods: not ours to wrap */
    p->real->pMethods->xClose(p->real);
    p->base.pMethods = NULL;
    return SQLITE_CANTOPEN;
  }
  p->base.pMethods = &wbMethods;
  if ((flags & SQLITE_OPEN_WAL) && name != NULL) {
    sqlite3_file *db = sqlite3_database_file_object(name);
    if (db != NULL && db->pMethods == &wbMethods) {
      p->db = (WbFile *)db;
      p->db->wal = p;
    }
  }
  return SQLITE_OK;
}

/* everything else is the wrapped VFS's */
static int wbDelete(sqlite3_vfs *v, const char *n, int s) { (void)v; return realVfs->xDelete(realVfs, n, s); }
static int wbAccess(sqlite3_vfs *v, const char *n, int fl, int *o) { (void)v; return realVfs->xAccess(realVfs, n, fl, o); }
static int wbFullPathname(sqlite3_vfs *v, const char *n, int sz, char *o) { (void)v; return realVfs->xFullPathname(realVfs, n, sz, o); }
static void *wbDlOpen(sqlite3_vfs *v, const char *n) { (void)v; return realVfs->xDlOpen(realVfs, n); }
static void wbDlError(sqlite3_vfs *v, int n, char *o) { (void)v; realVfs->xDlError(realVfs, n, o); }
static void (*wbDlSym(sqlite3_vfs *v, void *h, const char *s))(void) { (void)v; return realVfs->xDlSym(realVfs, h, s); }
static void wbDlClose(sqlite3_vfs *v, void *h) { (void)v; realVfs->xDlClose(realVfs, h); }
static int wbRandomness(sqlite3_vfs *v, int n, char *o) { (void)v; return realVfs->xRandomness(realVfs, n, o); }
static int wbSleep(sqlite3_vfs *v, int us) { (void)v; return realVfs->xSleep(realVfs, us); }
static int wbCurrentTime(sqlite3_vfs *v, double *o) { (void)v; return realVfs->xCurrentTime(realVfs, o); }
static int wbGetLastError(sqlite3_vfs *v, int n, char *o) { (void)v; return realVfs->xGetLastError(realVfs, n, o); }
static int wbCurrentTimeInt64(sqlite3_vfs *v, sqlite3_int64 *o) { (void)v; return realVfs->xCurrentTimeInt64(realVfs, o); }

static sqlite3_vfs wbVfs = {
    2,        0,        0,          NULL,           "kiln-walbuf", NULL,         wbOpen,
    wbDelete, wbAccess, wbFullPathname, wbDlOpen,   wbDlError,     wbDlSym,      wbDlClose,
    wbRandomness, wbSleep, wbCurrentTime, wbGetLastError, wbCurrentTimeInt64, NULL, NULL, NULL,
};

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_kilnwalbuf_init(sqlite3 *db, char **errMsg, const sqlite3_api_routines *api) {
  (void)db;
  SQLITE_EXTENSION_INIT2(api);
  if (sqlite3_vfs_find("kiln-walbuf") != NULL) return SQLITE_OK_LOAD_PERMANENTLY;
  realVfs = sqlite3_vfs_find(NULL);
  if (realVfs == NULL || realVfs->iVersion < 2) {
    *errMsg = sqlite3_mprintf("kiln-walbuf: no default VFS to wrap");
    return SQLITE_ERROR;
  }
  wbVfs.szOsFile = (int)sizeof(WbFile) + realVfs->szOsFile;
  wbVfs.mxPathname = realVfs->mxPathname;
  int rc = sqlite3_vfs_register(&wbVfs, 1);
  return rc == SQLITE_OK ? SQLITE_OK_LOAD_PERMANENTLY : rc;
}
