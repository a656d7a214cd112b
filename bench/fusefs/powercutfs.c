/*
 * powercutfs: a FUSE passthrough file system that knows what a power cut keeps.
 *
 *   powercutfs LIVE MOUNTPOINT -o meta=META [-f] [-o max_threads=N] [libfuse -o ...]
 *
 * Mirrors the directory LIVE (a private, volatile copy of the durable image,
 * made by the caller: bench/fusefs/powercut.py) read-write at MOUNTPOINT and
 * records, in the directory META, what would survive a power loss under
 * strict POSIX rules (as LazyFS and SQLite's crash tests model it):
 *
 *   META/data/<oid>   a file's whole content as of its last fsync/fdatasync
 *                     (or write through an O_SYNC/O_DSYNC descriptor);
 *   META/dirs/<oid>   a directory's whole entry list as of its last fsyncdir:
 *                     records "K MODE OID\0NAME\0TARGET\0" (K: d, f or l;
 *                     MODE octal; TARGET: a symlink's target, else empty);
 *   META/created      one line "INO COUNTER" per inode this daemon created,
 *                     appended in creation order (the last line for an INO
 *                     names the inode that has it now).
 *
 * An object id (oid) names an inode, not a path: "i<INO>" for an inode that
 * was in LIVE at mount (INO: its inode number then; the caller wrote
 * META/base mapping those to paths of the durable image), "n<COUNTER>" for
 * one created since (a backing inode number can be reused after an unlink;
 * the counter cannot). Nothing here touches the durable image itself: the
 * caller rebuilds it from META (and, for torn writes, LIVE) after killing us.
 *
 * The power is cut ("frozen") by writing "cut" to the control file, or at the
 * N-th write-like operation after "arm N": from then on nothing more becomes
 * durable (later fsyncs are counted as lost) while the mount goes on serving,
 * as a machine's processes run on for a moment after the disk stopped
 * listening. Write-like operations: write, create, open with O_TRUNC,
 * truncate, mkdir, symlink, link, rename, unlink, rmdir.
 *
 * The control file /.powercutfs (never listed, never counted):
 *   read   -> "writes=N fsyncs=N dirsyncs=N cut=0|1 armed=N lost_fsyncs=N cut_at=N\n"
 *             (armed: write-like operations left before the cut, 0 if unarmed;
 *             cut_at: the value of writes when the power was cut, else 0)
 *   write  "arm N"  -> cut the power at the N-th write-like operation from now
 *          "cut"    -> cut the power now
 *
 * Invariants:
 *  - every backing access is relative to base_fd (an O_PATH fd of LIVE) via
 *    *at() calls and never follows a symlink, as in latencyfs.c;
 *  - dur_lock guards the oid table, META and `frozen`: an inode is created
 *    and given its oid under it, and a directory listing or a file's content
 *    is recorded under it, so a listing never pairs a name with a stale oid
 *    and nothing becomes durable once `frozen` is set;
 *  - ns_lock makes a directory listing a snapshot: every change to a
 *    directory (create, mkdir, symlink, link, rename, unlink, rmdir) holds
 *    it shared, fsyncdir exclusively (writers preferred), so a listing never
 *    sees a rename half done (a name under neither name), which readdir
 *    alone allows and a journaling disk never shows after a crash. (The
 *    kernel already holds a directory's lock across FUSE_FSYNCDIR and
 *    across every change to it; this does not rely on that.) Lock order:
 *    ns_lock, then dur_lock;
 *  - META's files appear by rename from a .tmp name: a reader (the caller,
 *    after SIGKILL) sees a whole old or a whole new record, never a part.
 *
 * syncfs(2): the kernel sends FUSE_SYNCFS only to virtiofs mounts, never
 * through /dev/fuse, and libfuse 3.14 has no handler for it; syncfs on this
 * mount makes nothing durable. Use fsync on files and directories.
 *
 * Build: bash build.sh powercutfs OUTPUT (gcc, pkg-config, libfuse3-dev)
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CTL_PATH "/.powercutfs"

static struct {
    char *source;
    char *meta;
} opts;

static const struct fuse_opt pc_opts[] = {
    {"meta=%s", offsetof(__typeof__(opts), meta), 0},
    FUSE_OPT_END};

static int base_fd = -1;        /* O_PATH fd of LIVE */
static int data_fd = -1;        /* META/data */
static int dirs_fd = -1;        /* META/dirs */
static int created_fd = -1;     /* META/created, O_APPEND */

/* Counters (atomics). armed > 0: write-like operations left before the cut. */
static long writes, fsyncs, dirsyncs, lost_fsyncs, armed, cut_at;

/* ---- object ids: backing inode -> creation counter (guarded by dur_lock) ---- */

static pthread_mutex_t dur_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t ns_lock;    /* initialised in main: writers preferred */
static int frozen;              /* the power is cut: nothing more becomes durable */
static uint64_t next_counter;

/* Open addressing, linear probing; key 0 is "empty" (no inode number is 0). */
static struct slot { uint64_t ino, counter; } *table;
static size_t table_size, table_used;

static struct slot *table_find(uint64_t ino)
{
    size_t mask = table_size - 1, i = (ino * 0x9E3779B97F4A7C15ULL) & mask;
    while (table[i].ino && table[i].ino != ino)
        i = (i + 1) & mask;
    return &table[i];
}

static int table_put(uint64_t ino, uint64_t counter)
{
    if ((table_used + 1) * 2 > table_size) {
        struct slot *old = table;
        size_t old_size = table_size, size = table_size ? table_size * 2 : 1024;
        struct slot *grown = calloc(size, sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        table = grown;
        table_size = size;
        table_used = 0;
        for (size_t i = 0; i < old_size; i++)
            if (old[i].ino) {
                *table_find(old[i].ino) = old[i];
                table_used++;
            }
        free(old);
    }
    struct slot *s = table_find(ino);
    if (!s->ino)
        table_used++;
    s->ino = ino;
    s->counter = counter;
    return 0;
}

/* The oid of backing inode INO into buf (dur_lock held). */
static void oid_of(uint64_t ino, char *buf, size_t size)
{
    struct slot *s = table_size ? table_find(ino) : NULL;
    if (s && s->ino)
        snprintf(buf, size, "n%" PRIu64, s->counter);
    else
        snprintf(buf, size, "i%" PRIu64, ino);
}

/* A new inode INO was just created (dur_lock held): it gets the next counter. */
static int note_created(uint64_t ino)
{
    uint64_t counter = ++next_counter;
    int res = table_put(ino, counter);
    if (res)
        return res;
    char line[64];
    int n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", ino, counter);
    return write(created_fd, line, n) == n ? 0 : -EIO;
}

/* ---- the durable records ---------------------------------------------------- */

/* Write everything in buf to fd; 0 or -errno. */
static int write_all(int fd, const char *buf, size_t size)
{
    while (size) {
        ssize_t n = write(fd, buf, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        size -= n;
    }
    return 0;
}

/* Publish META/<dir>/<oid> from the open temporary file tmp (closed here). */
static int publish(int dir_fd, const char *oid, const char *tmp, int fd, int res)
{
    if (close(fd) == -1 && !res)
        res = -errno;
    if (!res && renameat(dir_fd, tmp, dir_fd, oid) == -1)
        res = -errno;
    if (res)
        unlinkat(dir_fd, tmp, 0);
    return res;
}

/* Record the whole content of the open file fd as its inode's durable data.
 * fd may be write-only: the content is read through a new descriptor. */
static int make_data_durable(int fd)
{
    struct stat st;
    char oid[32], tmp[64], proc[64], buf[65536];
    if (fstat(fd, &st) == -1)
        return -errno;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    pthread_mutex_lock(&dur_lock);
    if (frozen) {
        __atomic_add_fetch(&lost_fsyncs, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&dur_lock);
        return 0;
    }
    oid_of(st.st_ino, oid, sizeof(oid));
    snprintf(tmp, sizeof(tmp), "%s.tmp", oid);
    int res = 0, in = open(proc, O_RDONLY | O_CLOEXEC);
    int out = in < 0 ? -1 : openat(data_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (in < 0 || out < 0) {
        res = -errno;
        if (in >= 0)
            close(in);
        pthread_mutex_unlock(&dur_lock);
        return res;
    }
    for (off_t off = 0;;) {
        ssize_t n = pread(in, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            res = n < 0 ? -errno : 0;
            break;
        }
        if ((res = write_all(out, buf, n)))
            break;
        off += n;
    }
    close(in);
    res = publish(data_fd, oid, tmp, out, res);
    pthread_mutex_unlock(&dur_lock);
    return res;
}

/* Record the entry list of the directory open as dfd as its durable entries. */
static int make_dir_durable(int dfd)
{
    struct stat st;
    char oid[32], tmp[64];
    if (fstat(dfd, &st) == -1)
        return -errno;
    pthread_rwlock_wrlock(&ns_lock);
    pthread_mutex_lock(&dur_lock);
    if (frozen) {
        __atomic_add_fetch(&lost_fsyncs, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&dur_lock);
        pthread_rwlock_unlock(&ns_lock);
        return 0;
    }
    oid_of(st.st_ino, oid, sizeof(oid));
    snprintf(tmp, sizeof(tmp), "%s.tmp", oid);
    int res = 0, list_fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = list_fd < 0 ? NULL : fdopendir(list_fd);
    int out = dir ? openat(dirs_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (!dir || out < 0) {
        res = -errno;
        if (dir)
            closedir(dir);
        else if (list_fd >= 0)
            close(list_fd);
        pthread_mutex_unlock(&dur_lock);
        pthread_rwlock_unlock(&ns_lock);
        return res;
    }
    struct stat root;           /* the root lists no control file */
    int is_root = fstat(base_fd, &root) == 0 && root.st_ino == st.st_ino && root.st_dev == st.st_dev;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e) {
            res = -errno;
            break;
        }
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            (is_root && !strcmp(e->d_name, CTL_PATH + 1)))
            continue;
        struct stat child;
        if (fstatat(dirfd(dir), e->d_name, &child, AT_SYMLINK_NOFOLLOW) == -1)
            continue;           /* gone meanwhile: not in this listing */
        char kind = S_ISDIR(child.st_mode) ? 'd' : S_ISLNK(child.st_mode) ? 'l' : S_ISREG(child.st_mode) ? 'f' : 0;
        if (!kind)
            continue;           /* fifos, sockets, devices: not modelled */
        char child_oid[32], head[64], target[4096];
        ssize_t target_len = 0;
        if (kind == 'l' && (target_len = readlinkat(dirfd(dir), e->d_name, target, sizeof(target))) < 0)
            continue;
        oid_of(child.st_ino, child_oid, sizeof(child_oid));
        int n = snprintf(head, sizeof(head), "%c %o %s", kind, (unsigned)(child.st_mode & 07777), child_oid);
        if ((res = write_all(out, head, n + 1)) || (res = write_all(out, e->d_name, strlen(e->d_name) + 1)) ||
            (res = write_all(out, target, target_len)) || (res = write_all(out, "", 1)))
            break;
    }
    closedir(dir);
    res = publish(dirs_fd, oid, tmp, out, res);
    pthread_mutex_unlock(&dur_lock);
    pthread_rwlock_unlock(&ns_lock);
    return res;
}

/* The power is cut now (idempotent). */
static void freeze(void)
{
    pthread_mutex_lock(&dur_lock);
    if (!frozen) {
        frozen = 1;
        __atomic_store_n(&cut_at, __atomic_load_n(&writes, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&dur_lock);
}

/* Count one write-like operation; the armed one cuts the power. */
static void note_write(void)
{
    __atomic_add_fetch(&writes, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&armed, __ATOMIC_RELAXED) > 0 && __atomic_sub_fetch(&armed, 1, __ATOMIC_RELAXED) == 0)
        freeze();               /* exactly one thread sees the count reach 0 */
}

/* ---- the control file ------------------------------------------------------- */

static int is_ctl(const char *path)
{
    return path && strcmp(path, CTL_PATH) == 0;
}

static int ctl_format(char *buf, size_t size)
{
    long left = __atomic_load_n(&armed, __ATOMIC_RELAXED);
    return snprintf(buf, size, "writes=%ld fsyncs=%ld dirsyncs=%ld cut=%d armed=%ld lost_fsyncs=%ld cut_at=%ld\n",
                    __atomic_load_n(&writes, __ATOMIC_RELAXED), __atomic_load_n(&fsyncs, __ATOMIC_RELAXED),
                    __atomic_load_n(&dirsyncs, __ATOMIC_RELAXED), __atomic_load_n(&frozen, __ATOMIC_RELAXED),
                    left > 0 ? left : 0, __atomic_load_n(&lost_fsyncs, __ATOMIC_RELAXED),
                    __atomic_load_n(&cut_at, __ATOMIC_RELAXED));
}

static int ctl_command(const char *buf, size_t size)
{
    char cmd[64];
    if (size >= sizeof(cmd))
        return -EINVAL;
    memcpy(cmd, buf, size);
    cmd[size] = 0;
    while (size && (cmd[size - 1] == '\n' || cmd[size - 1] == ' '))
        cmd[--size] = 0;
    if (strcmp(cmd, "cut") == 0) {
        freeze();
        return 0;
    }
    if (strncmp(cmd, "arm ", 4) == 0) {
        char *end;
        long n = strtol(cmd + 4, &end, 10);
        if (end == cmd + 4 || *end || n < 1)
            return -EINVAL;
        __atomic_store_n(&armed, n, __ATOMIC_RELAXED);
        return 0;
    }
    return -EINVAL;
}

/* ---- operations --------------------------------------------------------------- */

#define ERR(expr) ((expr) == -1 ? -errno : 0)

/* The backing path of a FUSE path: "/a/b" -> "a/b", "/" -> ".". */
static const char *rel(const char *path)
{
    return path[1] ? path + 1 : ".";
}

/* An open file: the backing descriptor and whether every write is durable. */
struct pfile {
    int fd;
    int sync;                   /* opened O_SYNC or O_DSYNC */
};

#define PF(fi) ((struct pfile *)(uintptr_t)(fi)->fh)
#define CTL_FH ((uint64_t)0)    /* fh of the control file: no struct pfile */

static void *pc_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  /* every write reaches us when write(2) returns */
    cfg->use_ino = 1;           /* st_ino from LIVE: hard links stay visible */
    cfg->hard_remove = 1;       /* an unlinked open file goes at once: no .fuse_hidden names in listings */
    return NULL;
}

static int pc_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        memset(st, 0, sizeof(*st));
        st->st_mode = S_IFREG | 0666;
        st->st_nlink = 1;
        st->st_mtime = time(NULL);
        return 0;
    }
    if (fi && fi->fh != CTL_FH)
        return ERR(fstat(PF(fi)->fd, st));
    return ERR(fstatat(base_fd, rel(path), st, AT_SYMLINK_NOFOLLOW));
}

static int pc_readlink(const char *path, char *buf, size_t size)
{
    ssize_t n = readlinkat(base_fd, rel(path), buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = 0;
    return 0;
}

static int pc_opendir(const char *path, struct fuse_file_info *fi)
{
    int fd = openat(base_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    if (!dir) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return -err;
    }
    fi->fh = (uintptr_t)dir;
    return 0;
}

/* The whole directory in one call (offsets 0): libfuse buffers it. */
static int pc_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)off;
    (void)flags;
    DIR *dir = (DIR *)(uintptr_t)fi->fh;
    int root = strcmp(path, "/") == 0;
    rewinddir(dir);
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e)
            return -errno;      /* 0 at the end of the directory */
        if (root && strcmp(e->d_name, CTL_PATH + 1) == 0)
            continue;
        struct stat st = {.st_ino = e->d_ino, .st_mode = (mode_t)DTTOIF(e->d_type)};
        if (filler(buf, e->d_name, &st, 0, 0))
            return 0;           /* libfuse's buffer is full */
    }
}

static int pc_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    closedir((DIR *)(uintptr_t)fi->fh);
    return 0;
}

static int pc_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    (void)datasync;
    __atomic_add_fetch(&dirsyncs, 1, __ATOMIC_RELAXED);
    return make_dir_durable(dirfd((DIR *)(uintptr_t)fi->fh));
}

static int new_pfile(struct fuse_file_info *fi, int fd)
{
    struct pfile *pf = malloc(sizeof(*pf));
    if (!pf) {
        close(fd);
        return -ENOMEM;
    }
    pf->fd = fd;
    pf->sync = (fi->flags & (O_SYNC | O_DSYNC)) != 0;
    fi->fh = (uintptr_t)pf;
    return 0;
}

static int pc_open(const char *path, struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        fi->direct_io = 1;      /* every read asks the daemon: fresh counters */
        fi->fh = CTL_FH;
        return 0;
    }
    if (fi->flags & O_TRUNC)
        note_write();
    int fd = openat(base_fd, rel(path), (fi->flags & ~O_CREAT) | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : new_pfile(fi, fd);
}

/* O_CREAT: made with O_EXCL first, so we know whether a new inode was born. */
static int pc_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return pc_open(path, fi);
    note_write();
    int flags = fi->flags | O_NOFOLLOW | O_CLOEXEC, fd, res = 0;
    struct stat st;
    pthread_rwlock_rdlock(&ns_lock);
    pthread_mutex_lock(&dur_lock);
    for (;;) {
        fd = openat(base_fd, rel(path), flags | O_CREAT | O_EXCL, mode);
        if (fd >= 0) {
            res = fstat(fd, &st) == -1 ? -errno : note_created(st.st_ino);
            break;
        }
        if (errno != EEXIST || (fi->flags & O_EXCL)) {
            res = -errno;
            break;
        }
        fd = openat(base_fd, rel(path), flags & ~(O_CREAT | O_EXCL));
        if (fd >= 0 || errno != ENOENT) {
            res = fd < 0 ? -errno : 0;
            break;
        }                       /* unlinked between the two opens: try again */
    }
    pthread_mutex_unlock(&dur_lock);
    pthread_rwlock_unlock(&ns_lock);
    if (res) {
        if (fd >= 0)
            close(fd);
        return res;
    }
    return new_pfile(fi, fd);
}

static int pc_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        char text[256];
        int n = ctl_format(text, sizeof(text));
        if (off >= n)
            return 0;
        size = size < (size_t)(n - off) ? size : (size_t)(n - off);
        memcpy(buf, text + off, size);
        return (int)size;
    }
    ssize_t n = pread(PF(fi)->fd, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static int pc_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        int res = ctl_command(buf, size);
        return res < 0 ? res : (int)size;
    }
    note_write();
    ssize_t n = pwrite(PF(fi)->fd, buf, size, off);
    if (n < 0)
        return -errno;
    if (PF(fi)->sync) {
        __atomic_add_fetch(&fsyncs, 1, __ATOMIC_RELAXED);
        int res = make_data_durable(PF(fi)->fd);
        if (res)
            return res;
    }
    return (int)n;
}

static int pc_flush(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    (void)fi;
    return 0;
}

static int pc_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    if (fi->fh != CTL_FH) {
        close(PF(fi)->fd);
        free(PF(fi));
    }
    return 0;
}

static int pc_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)datasync;
    if (is_ctl(path))
        return 0;
    __atomic_add_fetch(&fsyncs, 1, __ATOMIC_RELAXED);
    return make_data_durable(PF(fi)->fd);
}

static int pc_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    return ERR(fstatvfs(base_fd, st));
}

static int pc_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return 0;               /* open(O_TRUNC) of the control file */
    note_write();
    if (fi && fi->fh != CTL_FH)
        return ERR(ftruncate(PF(fi)->fd, size));
    int fd = openat(base_fd, rel(path), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int res = ERR(ftruncate(fd, size));
    close(fd);
    return res;
}

static int pc_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    if (fi && fi->fh != CTL_FH)
        return ERR(fchmod(PF(fi)->fd, mode));
    return ERR(fchmodat(base_fd, rel(path), mode, 0));
}

static int pc_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    (void)fi;
    return ERR(fchownat(base_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
}

static int pc_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    (void)fi;
    return ERR(utimensat(base_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW));
}

static int pc_mkdir(const char *path, mode_t mode)
{
    note_write();
    struct stat st;
    pthread_rwlock_rdlock(&ns_lock);
    pthread_mutex_lock(&dur_lock);
    int res = ERR(mkdirat(base_fd, rel(path), mode));
    if (!res)
        res = fstatat(base_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == -1 ? -errno : note_created(st.st_ino);
    pthread_mutex_unlock(&dur_lock);
    pthread_rwlock_unlock(&ns_lock);
    return res;
}

static int pc_symlink(const char *target, const char *path)
{
    note_write();
    struct stat st;
    pthread_rwlock_rdlock(&ns_lock);
    pthread_mutex_lock(&dur_lock);
    int res = ERR(symlinkat(target, base_fd, rel(path)));
    if (!res)
        res = fstatat(base_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == -1 ? -errno : note_created(st.st_ino);
    pthread_mutex_unlock(&dur_lock);
    pthread_rwlock_unlock(&ns_lock);
    return res;
}

static int pc_unlink(const char *path)
{
    note_write();
    pthread_rwlock_rdlock(&ns_lock);
    int res = ERR(unlinkat(base_fd, rel(path), 0));
    pthread_rwlock_unlock(&ns_lock);
    return res;
}

static int pc_rmdir(const char *path)
{
    note_write();
    pthread_rwlock_rdlock(&ns_lock);
    int res = ERR(unlinkat(base_fd, rel(path), AT_REMOVEDIR));
    pthread_rwlock_unlock(&ns_lock);
    return res;
}

static int pc_rename(const char *from, const char *to, unsigned int flags)
{
    note_write();
    pthread_rwlock_rdlock(&ns_lock);
    int res = ERR(renameat2(base_fd, rel(from), base_fd, rel(to), flags));
    pthread_rwlock_unlock(&ns_lock);
    return res;
}

static int pc_link(const char *from, const char *to)
{
    note_write();
    pthread_rwlock_rdlock(&ns_lock);
    int res = ERR(linkat(base_fd, rel(from), base_fd, rel(to), 0));
    pthread_rwlock_unlock(&ns_lock);
    return res;
}

static const struct fuse_operations pc_ops = {
    .init = pc_init,
    .getattr = pc_getattr,
    .readlink = pc_readlink,
    .opendir = pc_opendir,
    .readdir = pc_readdir,
    .releasedir = pc_releasedir,
    .fsyncdir = pc_fsyncdir,
    .open = pc_open,
    .create = pc_create,
    .read = pc_read,
    .write = pc_write,
    .flush = pc_flush,
    .release = pc_release,
    .fsync = pc_fsync,
    .statfs = pc_statfs,
    .truncate = pc_truncate,
    .chmod = pc_chmod,
    .chown = pc_chown,
    .utimens = pc_utimens,
    .mkdir = pc_mkdir,
    .symlink = pc_symlink,
    .unlink = pc_unlink,
    .rmdir = pc_rmdir,
    .rename = pc_rename,
    .link = pc_link,
};

/* The first non-option argument is LIVE; the rest go to libfuse. */
static int pc_arg(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    (void)data;
    (void)outargs;
    if (key == FUSE_OPT_KEY_NONOPT && !opts.source) {
        opts.source = strdup(arg);
        return 0;
    }
    return 1;
}

static int open_meta(const char *name, int flags)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", opts.meta, name);
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0)
        perror(path);
    return fd;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    if (fuse_opt_parse(&args, &opts, pc_opts, pc_arg) == -1)
        return 1;
    if (!opts.source || !opts.meta) {
        fprintf(stderr, "usage: %s LIVE MOUNTPOINT -o meta=DIR [-f] [-o max_threads=N,...]\n", argv[0]);
        return 1;
    }
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ns_lock, &attr);
    base_fd = open(opts.source, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (base_fd < 0) {
        perror(opts.source);
        return 1;
    }
    data_fd = open_meta("data", O_PATH | O_DIRECTORY);
    dirs_fd = open_meta("dirs", O_PATH | O_DIRECTORY);
    created_fd = open_meta("created", O_WRONLY | O_CREAT | O_APPEND);
    if (data_fd < 0 || dirs_fd < 0 || created_fd < 0)
        return 1;
    /* "powercutfs" in the mount table: `grep powercutfs /proc/mounts` finds leftovers.
     * First, so a caller's own -o fsname=... (later: the last one wins) names its mounts. */
    fuse_opt_insert_arg(&args, 1, "-osubtype=powercutfs,fsname=powercutfs");
    int res = fuse_main(args.argc, args.argv, &pc_ops, NULL);
    fuse_opt_free_args(&args);
    return res;
}
