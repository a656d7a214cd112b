/*
 * latencyfs: a FUSE passthrough file system that makes every operation slow.
 *
 *   latencyfs SOURCE MOUNTPOINT [-f] [-o delay_us=N] [-o readonly]
 *             [-o max_threads=256,max_idle_threads=256] [-o max_background=64]
 *             [-o attr_timeout=S,entry_timeout=S,negative_timeout=S]
 *
 * Mirrors the directory SOURCE at MOUNTPOINT (read-write unless -o readonly,
 * which is ours, not the kernel's -o ro: the control file stays writable) and
 * sleeps delay_us microseconds at the start of every operation, as a network
 * file system (NFS, a parallel file system) costs a round trip per call. It
 * counts the operations in flight (now, peak since the last reset) and the
 * total per operation. All other -o options are libfuse's own: the thread
 * pool (libfuse starts threads lazily: warm it up), the kernel's caches of
 * attributes and entries (libfuse's default is 1 s; 0 turns them off) and
 * the kernel's cap on background requests (readahead; 12 by default; our
 * own -o max_background=N, as libfuse 3.14's high level lacks it).
 *
 * The control file /.latencyfs (never listed, never delayed nor counted):
 *   read   -> "inflight=N peak=N total=N held=N busy_us=N getattr=N ...\n"
 *             (busy_us: the operations' summed durations; over a wall time,
 *             the mean number in flight)
 *   write  "reset"            -> total, busy and per-op counts to 0, peak to inflight
 *          "hold OPS PATH"    -> OPS (comma-separated op names, e.g. open,read)
 *                                on PATH (relative to the root) block until
 *                                "release"; one held path at a time
 *          "release"          -> wake every held operation
 *          "delay N"          -> delay_us becomes N from now on
 *
 * Invariants:
 *  - every backing access is relative to base_fd (an O_PATH fd of SOURCE,
 *    opened before fuse_main, which may chdir away) via *at() calls; the
 *    kernel resolves symlinks itself (lookups come one component at a time),
 *    and the daemon never follows one (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW;
 *    chmod aside, which the kernel never sends for a link);
 *  - every operation on the tree runs between op_enter() and op_leave(), so
 *    "inflight" is exactly the handlers running now, delay and hold included.
 *    A later power-cut layer (issue 20) hooks in at the same two points and
 *    in lt_write/lt_fsync/the namespace ops, which are the only writers.
 *
 * Build: gcc -O2 -Wall -o latencyfs latencyfs.c $(pkg-config --cflags --libs fuse3)
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>         /* struct fuse_init_out, FUSE_PARALLEL_DIROPS */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CTL_PATH "/.latencyfs"

/* Operation kinds: the index into op_total and the bit of a hold mask. */
enum op { OP_GETATTR, OP_READDIR, OP_OPEN, OP_READ, OP_READLINK, OP_FLUSH,
          OP_RELEASE, OP_STATFS, OP_WRITE, OP_FSYNC, OP_CREATE, OP_NAMESPACE,
          OP_SETATTR, OP_COUNT };
static const char *const op_names[OP_COUNT] = {
    "getattr", "readdir", "open", "read", "readlink", "flush", "release",
    "statfs", "write", "fsync", "create", "namespace", "setattr"};

static struct {
    char *source;
    unsigned delay_us;
    unsigned max_background;    /* 0: the kernel's default (12) */
    int readonly;               /* our -o readonly: the tree refuses changes, the control file not */
} opts;

static const struct fuse_opt lt_opts[] = {
    {"delay_us=%u", offsetof(__typeof__(opts), delay_us), 0},
    {"max_background=%u", offsetof(__typeof__(opts), max_background), 0},
    {"readonly", offsetof(__typeof__(opts), readonly), 1},
    FUSE_OPT_END};

static int base_fd = -1;        /* O_PATH fd of SOURCE */
static struct fuse *the_fuse;   /* set in init; to notice the session ending */

/* Counters: updated with atomics, read without a lock (a snapshot may be torn
 * across fields, never within one). */
static long inflight, peak, total, held, op_total[OP_COUNT];
static long busy_ns;            /* the sum of all operations' durations: / wall = mean depth */
static __thread struct timespec op_start;  /* a handler runs on one thread, enter to leave */

static long ns_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000000000L + (now.tv_nsec - t->tv_nsec);
}

/* Hold state: hold_mask != 0 iff a path is held; both guarded by hold_lock. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static unsigned hold_mask;
static char hold_path[4096];

/* The backing path of a FUSE path: "/a/b" -> "a/b", "/" -> ".". */
static const char *rel(const char *path)
{
    return path[1] ? path + 1 : ".";
}

static int session_over(void)
{
    return the_fuse && fuse_session_exited(fuse_get_session(the_fuse));
}

/* Block while OP on PATH is held; gives up when the file system is unmounted,
 * so a held thread never keeps the daemon from exiting. */
static void wait_if_held(enum op op, const char *path)
{
    if (!__atomic_load_n(&hold_mask, __ATOMIC_ACQUIRE))
        return;                 /* fast path: nothing held */
    pthread_mutex_lock(&hold_lock);
    if ((hold_mask & (1u << op)) && strcmp(path, hold_path) == 0) {
        __atomic_add_fetch(&held, 1, __ATOMIC_RELAXED);
        while ((hold_mask & (1u << op)) && strcmp(path, hold_path) == 0 && !session_over()) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000 * 1000;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&hold_cond, &hold_lock, &until);
        }
        __atomic_sub_fetch(&held, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&hold_lock);
}

static void op_enter(enum op op, const char *path)
{
    clock_gettime(CLOCK_MONOTONIC, &op_start);
    long now = __atomic_add_fetch(&inflight, 1, __ATOMIC_RELAXED);
    long seen = __atomic_load_n(&peak, __ATOMIC_RELAXED);
    while (now > seen && !__atomic_compare_exchange_n(&peak, &seen, now, 0, __ATOMIC_RELAXED,
                                                      __ATOMIC_RELAXED))
        ;                       /* seen reloaded by the failed exchange */
    __atomic_add_fetch(&total, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&op_total[op], 1, __ATOMIC_RELAXED);
    unsigned delay_us = __atomic_load_n(&opts.delay_us, __ATOMIC_RELAXED);
    if (delay_us) {
        struct timespec d = {delay_us / 1000000, (delay_us % 1000000) * 1000L};
        while (nanosleep(&d, &d) == -1 && errno == EINTR)
            ;
    }
    if (path)
        wait_if_held(op, path);
}

/* Refuse a change to the tree when mounted -o readonly (checked before op_enter, never delayed). */
#define REFUSE_IF_READONLY() do { if (opts.readonly) return -EROFS; } while (0)

/* Returns res, so handlers can end with `return op_leave(res);`. */
static int op_leave(int res)
{
    __atomic_add_fetch(&busy_ns, ns_since(&op_start), __ATOMIC_RELAXED);
    __atomic_sub_fetch(&inflight, 1, __ATOMIC_RELAXED);
    return res;
}

#define ERR(expr) ((expr) == -1 ? -errno : 0)

/* ---- the control file ---------------------------------------------------- */

static int is_ctl(const char *path)
{
    return path && strcmp(path, CTL_PATH) == 0;
}

static int ctl_format(char *buf, size_t size)
{
    int n = snprintf(buf, size, "inflight=%ld peak=%ld total=%ld held=%ld busy_us=%ld",
                     __atomic_load_n(&inflight, __ATOMIC_RELAXED),
                     __atomic_load_n(&peak, __ATOMIC_RELAXED),
                     __atomic_load_n(&total, __ATOMIC_RELAXED),
                     __atomic_load_n(&held, __ATOMIC_RELAXED),
                     __atomic_load_n(&busy_ns, __ATOMIC_RELAXED) / 1000);
    for (int i = 0; i < OP_COUNT; i++)
        n += snprintf(buf + n, size - n, " %s=%ld", op_names[i],
                      __atomic_load_n(&op_total[i], __ATOMIC_RELAXED));
    n += snprintf(buf + n, size - n, "\n");
    return n;
}

static int ctl_command(const char *buf, size_t size)
{
    char cmd[4200];
    if (size >= sizeof(cmd))
        return -EINVAL;
    memcpy(cmd, buf, size);
    cmd[size] = 0;
    while (size && (cmd[size - 1] == '\n' || cmd[size - 1] == ' '))
        cmd[--size] = 0;
    if (strcmp(cmd, "reset") == 0) {
        __atomic_store_n(&total, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&busy_ns, 0, __ATOMIC_RELAXED);
        for (int i = 0; i < OP_COUNT; i++)
            __atomic_store_n(&op_total[i], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&peak, __atomic_load_n(&inflight, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
        return 0;
    }
    if (strncmp(cmd, "delay ", 6) == 0) {
        char *end;
        unsigned long us = strtoul(cmd + 6, &end, 10);
        if (end == cmd + 6 || *end || us > 60000000UL)
            return -EINVAL;
        __atomic_store_n(&opts.delay_us, (unsigned)us, __ATOMIC_RELAXED);
        return 0;
    }
    if (strcmp(cmd, "release") == 0) {
        pthread_mutex_lock(&hold_lock);
        __atomic_store_n(&hold_mask, 0, __ATOMIC_RELEASE);
        hold_path[0] = 0;
        pthread_cond_broadcast(&hold_cond);
        pthread_mutex_unlock(&hold_lock);
        return 0;
    }
    if (strncmp(cmd, "hold ", 5) == 0) {
        char *ops = cmd + 5, *path = strchr(ops, ' ');
        unsigned mask = 0;
        if (!path || strlen(path + 1) + 2 > sizeof(hold_path))
            return -EINVAL;
        *path++ = 0;
        while (*path == '/')
            path++;             /* "a/b" and "/a/b" name the same file */
        for (char *save, *name = strtok_r(ops, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            int i = 0;
            while (i < OP_COUNT && strcmp(name, op_names[i]) != 0)
                i++;
            if (i == OP_COUNT)
                return -EINVAL;
            mask |= 1u << i;
        }
        pthread_mutex_lock(&hold_lock);
        snprintf(hold_path, sizeof(hold_path), "/%s", path);
        __atomic_store_n(&hold_mask, mask, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&hold_cond);  /* a previously held path is let go */
        pthread_mutex_unlock(&hold_lock);
        return 0;
    }
    return -EINVAL;
}

/* ---- parallel lookups (libfuse < 3.17) ------------------------------------- */

/* Lookups and readdirs of one directory must run in parallel, as on NFS, or
 * the kernel sends them one at a time per directory. libfuse enables this
 * (FUSE_CAP_PARALLEL_DIROPS) by default but before 3.17 never tells the
 * kernel (libfuse#861, fixed by commit c9905341); Debian 12 ships 3.14. So
 * this executable exports a writev(), which libfuse calls instead of libc's:
 * the first message written after our init callback (libfuse then sends the
 * INIT reply) gets the flag. Any other writev passes through untouched. */
static int patch_init_reply;    /* set by lt_init, cleared by the one writev it patches */

ssize_t writev(int fd, const struct iovec *iov, int count)
{
    static ssize_t (*real_writev)(int, const struct iovec *, int);
    if (!real_writev)
        real_writev = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
#if FUSE_VERSION < FUSE_MAKE_VERSION(3, 17)
    if (count == 2 && iov[0].iov_len == sizeof(struct fuse_out_header) &&
        iov[1].iov_len == sizeof(struct fuse_init_out) &&
        __atomic_exchange_n(&patch_init_reply, 0, __ATOMIC_ACQ_REL)) {
        struct fuse_init_out reply = *(const struct fuse_init_out *)iov[1].iov_base;
        struct iovec patched[2] = {iov[0], {&reply, sizeof(reply)}};
        reply.flags |= FUSE_PARALLEL_DIROPS;
        return real_writev(fd, patched, 2);
    }
#endif
    return real_writev(fd, iov, count);
}

/* ---- operations ------------------------------------------------------------ */

static void *lt_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    if (opts.max_background) {  /* readahead is asynchronous: this caps its depth */
        conn->max_background = opts.max_background;
        conn->congestion_threshold = opts.max_background * 3 / 4;
    }
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        __atomic_store_n(&patch_init_reply, 1, __ATOMIC_RELEASE);
    cfg->use_ino = 1;           /* st_ino from SOURCE: hard links stay visible */
    the_fuse = fuse_get_context()->fuse;
    return NULL;
}

static int lt_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        memset(st, 0, sizeof(*st));
        st->st_mode = S_IFREG | 0666;
        st->st_nlink = 1;
        st->st_mtime = time(NULL);
        return 0;
    }
    op_enter(OP_GETATTR, path);
    int res = fi ? ERR(fstat(fi->fh, st)) : ERR(fstatat(base_fd, rel(path), st, AT_SYMLINK_NOFOLLOW));
    return op_leave(res);
}

static int lt_readlink(const char *path, char *buf, size_t size)
{
    op_enter(OP_READLINK, path);
    ssize_t n = readlinkat(base_fd, rel(path), buf, size - 1);
    if (n >= 0)
        buf[n] = 0;
    return op_leave(n < 0 ? -errno : 0);
}

static int lt_opendir(const char *path, struct fuse_file_info *fi)
{
    op_enter(OP_OPEN, path);
    int fd = openat(base_fd, rel(path), O_RDONLY | O_DIRECTORY);
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    if (!dir) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return op_leave(-err);
    }
    fi->fh = (uintptr_t)dir;
    return op_leave(0);
}

/* The whole directory in one call (offsets 0): libfuse buffers it. */
static int lt_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)off;
    (void)flags;
    op_enter(OP_READDIR, path);
    DIR *dir = (DIR *)(uintptr_t)fi->fh;
    int root = strcmp(path, "/") == 0, res = 0;
    rewinddir(dir);
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e) {
            res = -errno;       /* 0 at the end of the directory */
            break;
        }
        if (root && strcmp(e->d_name, CTL_PATH + 1) == 0)
            continue;           /* the control file hides a namesake */
        struct stat st = {.st_ino = e->d_ino, .st_mode = (mode_t)DTTOIF(e->d_type)};
        if (filler(buf, e->d_name, &st, 0, 0))
            break;              /* libfuse's buffer is full */
    }
    return op_leave(res);
}

static int lt_releasedir(const char *path, struct fuse_file_info *fi)
{
    op_enter(OP_RELEASE, NULL);
    (void)path;
    closedir((DIR *)(uintptr_t)fi->fh);
    return op_leave(0);
}

static int lt_open(const char *path, struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        fi->direct_io = 1;      /* every read asks the daemon: fresh counters */
        fi->fh = (uint64_t)-1;
        return 0;
    }
    if (opts.readonly && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
        return -EROFS;
    op_enter(OP_OPEN, path);
    int fd = openat(base_fd, rel(path), fi->flags | O_NOFOLLOW);
    if (fd < 0)
        return op_leave(-errno);
    fi->fh = fd;
    return op_leave(0);
}

static int lt_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return lt_open(path, fi);
    REFUSE_IF_READONLY();
    op_enter(OP_CREATE, path);
    int fd = openat(base_fd, rel(path), fi->flags | O_CREAT | O_NOFOLLOW, mode);
    if (fd < 0)
        return op_leave(-errno);
    fi->fh = fd;
    return op_leave(0);
}

static int lt_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        char text[1024];
        int n = ctl_format(text, sizeof(text));
        if (off >= n)
            return 0;
        size = size < (size_t)(n - off) ? size : (size_t)(n - off);
        memcpy(buf, text + off, size);
        return (int)size;
    }
    op_enter(OP_READ, path);
    ssize_t n = pread(fi->fh, buf, size, off);
    return op_leave(n < 0 ? -errno : (int)n);
}

static int lt_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        int res = ctl_command(buf, size);
        return res < 0 ? res : (int)size;
    }
    REFUSE_IF_READONLY();
    op_enter(OP_WRITE, path);
    ssize_t n = pwrite(fi->fh, buf, size, off);
    return op_leave(n < 0 ? -errno : (int)n);
}

static int lt_flush(const char *path, struct fuse_file_info *fi)
{
    (void)fi;
    if (is_ctl(path))
        return 0;
    op_enter(OP_FLUSH, NULL);   /* a close(2) is a round trip on NFS too */
    return op_leave(0);
}

static int lt_release(const char *path, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return 0;
    op_enter(OP_RELEASE, NULL);
    close(fi->fh);
    return op_leave(0);
}

static int lt_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    REFUSE_IF_READONLY();
    op_enter(OP_FSYNC, path);
    return op_leave(ERR(datasync ? fdatasync(fi->fh) : fsync(fi->fh)));
}

static int lt_statfs(const char *path, struct statvfs *st)
{
    op_enter(OP_STATFS, path);
    return op_leave(ERR(fstatvfs(base_fd, st)));
}

static int lt_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return 0;               /* open(O_TRUNC) of the control file */
    REFUSE_IF_READONLY();
    op_enter(OP_SETATTR, path);
    int res;
    if (fi) {
        res = ERR(ftruncate(fi->fh, size));
    } else {
        int fd = openat(base_fd, rel(path), O_WRONLY | O_NOFOLLOW);
        res = fd < 0 ? -errno : ERR(ftruncate(fd, size));
        if (fd >= 0)
            close(fd);
    }
    return op_leave(res);
}

static int lt_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    REFUSE_IF_READONLY();
    op_enter(OP_SETATTR, path);
    return op_leave(fi ? ERR(fchmod(fi->fh, mode)) : ERR(fchmodat(base_fd, rel(path), mode, 0)));
}

static int lt_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    REFUSE_IF_READONLY();
    (void)fi;
    op_enter(OP_SETATTR, path);
    return op_leave(ERR(fchownat(base_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW)));
}

static int lt_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    REFUSE_IF_READONLY();
    (void)fi;
    op_enter(OP_SETATTR, path);
    return op_leave(ERR(utimensat(base_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW)));
}

static int lt_mkdir(const char *path, mode_t mode)
{
    REFUSE_IF_READONLY();
    op_enter(OP_NAMESPACE, path);
    return op_leave(ERR(mkdirat(base_fd, rel(path), mode)));
}

static int lt_unlink(const char *path)
{
    REFUSE_IF_READONLY();
    op_enter(OP_NAMESPACE, path);
    return op_leave(ERR(unlinkat(base_fd, rel(path), 0)));
}

static int lt_rmdir(const char *path)
{
    REFUSE_IF_READONLY();
    op_enter(OP_NAMESPACE, path);
    return op_leave(ERR(unlinkat(base_fd, rel(path), AT_REMOVEDIR)));
}

static int lt_symlink(const char *target, const char *path)
{
    REFUSE_IF_READONLY();
    op_enter(OP_NAMESPACE, path);
    return op_leave(ERR(symlinkat(target, base_fd, rel(path))));
}

static int lt_rename(const char *from, const char *to, unsigned int flags)
{
    REFUSE_IF_READONLY();
    op_enter(OP_NAMESPACE, from);
    return op_leave(ERR(renameat2(base_fd, rel(from), base_fd, rel(to), flags)));
}

static int lt_link(const char *from, const char *to)
{
    REFUSE_IF_READONLY();
    op_enter(OP_NAMESPACE, from);
    return op_leave(ERR(linkat(base_fd, rel(from), base_fd, rel(to), 0)));
}

static const struct fuse_operations lt_ops = {
    .init = lt_init,
    .getattr = lt_getattr,
    .readlink = lt_readlink,
    .opendir = lt_opendir,
    .readdir = lt_readdir,
    .releasedir = lt_releasedir,
    .open = lt_open,
    .create = lt_create,
    .read = lt_read,
    .write = lt_write,
    .flush = lt_flush,
    .release = lt_release,
    .fsync = lt_fsync,
    .statfs = lt_statfs,
    .truncate = lt_truncate,
    .chmod = lt_chmod,
    .chown = lt_chown,
    .utimens = lt_utimens,
    .mkdir = lt_mkdir,
    .unlink = lt_unlink,
    .rmdir = lt_rmdir,
    .symlink = lt_symlink,
    .rename = lt_rename,
    .link = lt_link,
};

/* The first non-option argument is SOURCE; the rest go to libfuse. */
static int lt_arg(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    (void)data;
    (void)outargs;
    if (key == FUSE_OPT_KEY_NONOPT && !opts.source) {
        opts.source = strdup(arg);
        return 0;
    }
    return 1;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    if (fuse_opt_parse(&args, &opts, lt_opts, lt_arg) == -1)
        return 1;
    if (!opts.source) {
        fprintf(stderr, "usage: %s SOURCE MOUNTPOINT [-f] [-o delay_us=N,ro,max_threads=N,"
                        "attr_timeout=S,entry_timeout=S,...]\n", argv[0]);
        return 1;
    }
    base_fd = open(opts.source, O_PATH | O_DIRECTORY);
    if (base_fd < 0) {
        perror(opts.source);
        return 1;
    }
    /* "latencyfs" in the mount table: `mount | grep latencyfs` finds leftovers. First, so a
     * caller's own -o fsname=... (later: the last one wins) names its mounts. */
    fuse_opt_insert_arg(&args, 1, "-osubtype=latencyfs,fsname=latencyfs");
    int res = fuse_main(args.argc, args.argv, &lt_ops, NULL);
    fuse_opt_free_args(&args);
    return res;
}
