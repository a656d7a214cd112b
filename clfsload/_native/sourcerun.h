/* Runs of source operations on a process-wide pool of plain threads: the C half of
 * sourceio_c.run_ahead (its docstring and sourceio_py's are the specification).
 *
 * Why: through a slow source (NFS, FUSE) the loader issues dozens of lstat and
 * small-file reads at a time. On Python threads each one is a hand-over to a pool
 * thread and back and a release and take of the GIL on each side: about 50 futex
 * calls and 37 context switches per small file measured at 0.5 ms per operation,
 * more CPU than the operations themselves. Here the threads never touch Python:
 * a consumer hands a whole run of paths over once and takes the results in order,
 * waiting (the GIL released) only when the next one is not back yet.
 *
 * Invariants (all under pool.mu):
 *  - a run's items are issued in order; issued and not yet passed by the consumer
 *    at most `window` (its ring of result slots: item i lives in ring[i % window]);
 *  - a ring slot is reused only once FREE: an item the consumer passed while it ran
 *    is discarded (data freed, descriptor queued to close) by the thread that ran it;
 *  - no descriptor is closed under pool.mu (on FUSE or NFS a close is a FLUSH round
 *    trip): dropped ones are queued and closed by a pool thread before it waits, or by
 *    the consumer with the GIL released;
 *  - a run is freed when its last reference goes: the Python object's, the pool
 *    list's, and one per item running (a hung operation keeps its run, never its
 *    consumer: one waiting for a ring slot a passed item holds is woken when it ends);
 *  - with node slots (a POSIX semaphore shared by the node's worker processes) every
 *    operation runs holding one; a thread keeps its slot for up to `slot_run`
 *    operations in a row while there is work, as the Python pool threads do;
 *  - inline (most of a run's first CLFS_JUDGE_AFTER operations faster than fast_ns),
 *    no pool thread starts an item of the run: its consumer runs each as it takes it,
 *    until one is slow again.
 * No thread of the pool ever waits on the consumer: it only waits for work or a slot.
 * One thread (the consumer) takes from and closes a run.
 */
#ifndef CLFS_SOURCERUN_H
#define CLFS_SOURCERUN_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#ifndef O_NOATIME
#define O_NOATIME 0
#endif
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* operations a run times before it judges its source fast or slow (and again after each change) */
#define CLFS_JUDGE_AFTER 8

/* what a run does for each path */
enum { CLFS_RUN_LSTAT = 1, CLFS_RUN_OPEN_READ = 2 };

/* a ring slot's state */
enum { CLFS_SLOT_FREE = 0, CLFS_SLOT_RUNNING = 1, CLFS_SLOT_DONE = 2 };

/* where an open+read stopped (the errno of that call is the error), as sourceio_c's */
enum { CLFS_OK = 0, CLFS_FAILED_OPEN = 1, CLFS_FAILED_FSTAT = 2, CLFS_NOT_REGULAR = 3,
       CLFS_FAILED_READ = 4, CLFS_FAILED_RECHECK = 5, CLFS_FAILED_CLOSE = 6, CLFS_FAILED_LSTAT = 7 };

typedef struct {
    int state;
    Py_ssize_t index;      /* the item in this slot */
    int64_t start_ns;      /* CLOCK_MONOTONIC when its operation started (0: not yet) */
    int failed;            /* CLFS_* */
    int err;               /* errno of the failed call */
    int fd;                /* open+read: the descriptor left open, or -1 */
    int whole;             /* open+read: data is the whole content */
    struct stat st;        /* lstat, or open+read's fstat after the open */
    char* data;            /* open+read: malloc'd content when whole */
    Py_ssize_t n;          /* its length */
} clfs_slot;

typedef struct clfs_run {
    int kind;
    Py_ssize_t limit;      /* open+read: files below it are read whole */
    Py_ssize_t count;      /* items */
    char* names;           /* the paths, NUL-terminated, one after another */
    Py_ssize_t* offsets;   /* item i's path: names + offsets[i] */
    Py_ssize_t window;     /* ring size */
    clfs_slot* ring;
    Py_ssize_t next_issue; /* the next item a thread may start */
    Py_ssize_t next_take;  /* the next item the consumer may take (those below are passed) */
    int closed;            /* the consumer dropped the run: start nothing more */
    int refs;              /* the Python object's, plus one per item running */
    Py_ssize_t waiting;    /* the item the consumer waits for on `done`, or -1 */
    int64_t min_ns;        /* the fastest operation of the run (-1: none yet) */
    int64_t fast_ns;       /* an operation faster than this is not worth a thread (0: always one) */
    int inline_mode;       /* the consumer runs each item itself as it takes it (a fast source) */
    int judged;            /* operations ended since the mode was last set: ... */
    int judged_fast;       /* ... and how many of them were fast */
    sem_t* slots;          /* the node's, or NULL */
    int slot_run;
    pthread_cond_t done;
    struct clfs_run* next; /* the pool's list of runs with work to start */
} clfs_run;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work;
    clfs_run* head;        /* runs that may have items to start, oldest first */
    int threads;
    int forks_handled;     /* clfs_pool_after_fork registered */
} clfs_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

/* Descriptors of dropped items, closed outside pool.mu (on FUSE or NFS a close is a round trip,
   a FLUSH, and must not hold up the pool, nor a thread holding the GIL): by a pool thread before it
   waits for work, or by a consumer's take or close with the GIL released. */
static struct { int* fds; size_t count, cap; } clfs_closing;

/* In the child of a fork: none of the parent's threads, runs or lock holders are there. */
static void clfs_pool_after_fork(void) {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t work = PTHREAD_COND_INITIALIZER;
    clfs_pool.mu = mu;
    clfs_pool.work = work;
    clfs_pool.head = NULL;  /* the parent's runs are left to the parent (their memory, unfreed, here) */
    clfs_pool.threads = 0;
    clfs_closing.count = 0;  /* the parent's to close (the child's copies stay open: few, if any) */
}

static int64_t clfs_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the operations: the same calls, flags and torn-read rule as sourceio_c.open_read ---- */

/* fstat(fd) from the attributes the kernel holds, where it can say so: statx with
   AT_STATX_DONT_SYNC asks a network or FUSE file system for no round trip (the
   attributes its lookup of the path brought back a moment ago, as the open resolved
   it); a local file system answers as fstat does. Any failure, or a reply without
   every basic field: a plain fstat. */
static int clfs_fstat_held(int fd, struct stat* st) {
#if defined(STATX_BASIC_STATS) && defined(AT_STATX_DONT_SYNC) && defined(AT_EMPTY_PATH)
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &sx) == 0
            && (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS) {
        memset(st, 0, sizeof(*st));
        st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
        st->st_ino = sx.stx_ino;
        st->st_mode = sx.stx_mode;
        st->st_nlink = sx.stx_nlink;
        st->st_uid = sx.stx_uid;
        st->st_gid = sx.stx_gid;
        st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
        st->st_size = (off_t)sx.stx_size;
        st->st_blksize = sx.stx_blksize;
        st->st_blocks = (blkcnt_t)sx.stx_blocks;
        st->st_atim.tv_sec = sx.stx_atime.tv_sec;
        st->st_atim.tv_nsec = sx.stx_atime.tv_nsec;
        st->st_mtim.tv_sec = sx.stx_mtime.tv_sec;
        st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
        st->st_ctim.tv_sec = sx.stx_ctime.tv_sec;
        st->st_ctim.tv_nsec = sx.stx_ctime.tv_nsec;
        return 0;
    }
#endif
    return fstat(fd, st);
}

static int clfs_open_nofollow(const char* path) {
    const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    int fd;
    if (O_NOATIME) {
        do { fd = open(path, flags | O_NOATIME); } while (fd < 0 && errno == EINTR);
        if (fd >= 0 || (errno != EPERM && errno != EACCES))  /* O_NOATIME needs ownership */
            return fd;
    }
    do { fd = open(path, flags); } while (fd < 0 && errno == EINTR);
    return fd;
}

static int clfs_same_content(const struct stat* a, const struct stat* b) {
    return a->st_ino == b->st_ino && a->st_size == b->st_size
        && a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
        && a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Open a regular file and, if below `limit` bytes, read it whole (sourceio's open_read, into a
   slot): whole, `data` (malloc'd) holds it and the descriptor is closed; otherwise `fd` is left
   open for the stream path; or `failed` says which call failed and `err` its errno. */
static void clfs_open_read(const char* path, Py_ssize_t limit, clfs_slot* slot) {
    int rc;
    slot->failed = CLFS_OK;
    slot->err = 0;
    slot->fd = -1;
    slot->whole = 0;
    slot->data = NULL;
    slot->n = 0;
    int fd = clfs_open_nofollow(path);
    if (fd < 0) {
        slot->failed = CLFS_FAILED_OPEN;
        slot->err = errno;
        return;
    }
    do { rc = clfs_fstat_held(fd, &slot->st); } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        slot->failed = CLFS_FAILED_FSTAT;
        slot->err = errno;
    } else if (!S_ISREG(slot->st.st_mode)) {
        slot->failed = CLFS_NOT_REGULAR;
    } else if (slot->st.st_size < limit) {
        /* one byte more than the size: a file that grew since is not read whole */
        size_t cap = (size_t)slot->st.st_size + 1;
        char* buf = malloc(cap);
        ssize_t n;
        if (buf == NULL) {
            slot->failed = CLFS_FAILED_READ;
            slot->err = ENOMEM;
        } else {
            do { n = read(fd, buf, cap); } while (n < 0 && errno == EINTR);
            if (n < 0) {
                slot->failed = CLFS_FAILED_READ;
                slot->err = errno;
            } else if (n == slot->st.st_size) {
                struct stat after;
                do { rc = fstat(fd, &after); } while (rc != 0 && errno == EINTR);
                if (rc != 0) {
                    slot->failed = CLFS_FAILED_RECHECK;
                    slot->err = errno;
                } else if (clfs_same_content(&slot->st, &after)) {
                    slot->whole = 1;
                }
            }
            if (slot->whole) {
                slot->data = buf;
                slot->n = n;
            } else {
                free(buf);
            }
        }
    }
    if (slot->failed) {
        close(fd);  /* the error is the failed call's (slot->err), not close's */
    } else if (slot->whole) {
        if (close(fd) != 0) {
            slot->failed = CLFS_FAILED_CLOSE;
            slot->err = errno;
            free(slot->data);
            slot->data = NULL;
            slot->whole = 0;
        }
    } else {
        slot->fd = fd;  /* left open for the stream path */
    }
}

/* One item's operation into its slot (no lock held: the slot is this thread's while RUNNING). */
static void clfs_operate(clfs_run* run, clfs_slot* slot, const char* path) {
    int rc;
    if (run->kind == CLFS_RUN_OPEN_READ) {
        clfs_open_read(path, run->limit, slot);
        return;
    }
    slot->failed = CLFS_OK;
    slot->err = 0;
    slot->fd = -1;
    slot->whole = 0;
    slot->data = NULL;
    slot->n = 0;
    do { rc = lstat(path, &slot->st); } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        slot->failed = CLFS_FAILED_LSTAT;
        slot->err = errno;
    }
}

/* Queue a descriptor to close (pool.mu held); without memory for the queue, closed now. */
static void clfs_close_later(int fd) {
    if (clfs_closing.count == clfs_closing.cap) {
        size_t cap = clfs_closing.cap ? 2 * clfs_closing.cap : 64;
        int* grown = realloc(clfs_closing.fds, cap * sizeof(int));
        if (grown == NULL) {
            close(fd);
            return;
        }
        clfs_closing.fds = grown;
        clfs_closing.cap = cap;
    }
    clfs_closing.fds[clfs_closing.count++] = fd;
}

/* Close the queued descriptors (pool.mu held on entry and exit, released while closing). */
static void clfs_close_queued(void) {
    while (clfs_closing.count > 0) {
        int fd = clfs_closing.fds[--clfs_closing.count];
        pthread_mutex_unlock(&clfs_pool.mu);
        close(fd);
        pthread_mutex_lock(&clfs_pool.mu);
    }
}

/* Give back what a slot holds (an item nobody will take) and free it. */
static void clfs_discard(clfs_slot* slot) {
    if (slot->fd >= 0)
        clfs_close_later(slot->fd);
    free(slot->data);
    slot->fd = -1;
    slot->data = NULL;
    slot->state = CLFS_SLOT_FREE;
    slot->start_ns = 0;
}

static void clfs_run_free(clfs_run* run) {
    Py_ssize_t k;
    for (k = 0; k < run->window; k++)
        if (run->ring[k].state == CLFS_SLOT_DONE)
            clfs_discard(&run->ring[k]);
    pthread_cond_destroy(&run->done);
    free(run->ring);
    free(run->offsets);
    free(run->names);
    free(run);
}

/* Drop a reference (pool.mu held); the last one frees the run. */
static void clfs_run_unref(clfs_run* run) {
    if (--run->refs == 0)
        clfs_run_free(run);
}

/* May a thread start run's next item now? (pool.mu held) */
static int clfs_issuable(clfs_run* run) {
    Py_ssize_t i = run->next_issue;
    return !run->closed && !run->inline_mode && i < run->count && i < run->next_take + run->window
        && run->ring[i % run->window].state == CLFS_SLOT_FREE;
}

/* The next item to start, from the oldest run that has one, claimed; NULL if none (pool.mu held).
   A run leaves the list once closed or with nothing left to start (next_issue only grows). */
static clfs_run* clfs_claim(Py_ssize_t* index) {
    clfs_run** link = &clfs_pool.head;
    while (*link != NULL) {
        clfs_run* run = *link;
        if (clfs_issuable(run)) {
            Py_ssize_t i = run->next_issue++;
            clfs_slot* slot = &run->ring[i % run->window];
            slot->state = CLFS_SLOT_RUNNING;
            slot->index = i;
            slot->start_ns = 0;
            run->refs++;
            *index = i;
            return run;
        }
        if (run->closed || run->next_issue >= run->count) {
            *link = run->next;  /* nothing more to start here, ever */
            clfs_run_unref(run);  /* the list's reference */
            continue;
        }
        link = &run->next;  /* blocked by its window: take will wake the pool */
    }
    return NULL;
}

/* An item's operation ended (pool.mu held): hand it to the consumer, or discard it if passed. */
static void clfs_finish(clfs_run* run, Py_ssize_t i, int64_t took) {
    clfs_slot* slot = &run->ring[i % run->window];
    if (took >= 0 && (run->min_ns < 0 || took < run->min_ns))
        run->min_ns = took;
    if (took >= 0 && run->fast_ns > 0 && !run->inline_mode) {
        /* most of the first few fast (tmpfs, a page or attribute cache): a hand-over to a
           thread would cost more than the operation; the consumer runs the rest itself */
        run->judged++;
        run->judged_fast += took < run->fast_ns;
        if (run->judged >= CLFS_JUDGE_AFTER) {
            run->inline_mode = 2 * run->judged_fast > run->judged;
            run->judged = run->judged_fast = 0;
        }
    }
    if (run->closed || i < run->next_take) {
        clfs_discard(slot);  /* passed or dropped while it ran */
        pthread_cond_signal(&clfs_pool.work);  /* its ring slot is free again: one more item may start */
        if (run->waiting >= 0)
            pthread_cond_signal(&run->done);  /* ... perhaps the one the consumer waits for, inline */
    } else {
        slot->state = CLFS_SLOT_DONE;
        if (run->waiting == i)
            pthread_cond_signal(&run->done);
    }
    clfs_run_unref(run);
}

/* Run item i of run on this thread (pool.mu held on entry and exit; released while it runs). */
static int64_t clfs_run_item(clfs_run* run, Py_ssize_t i) {
    clfs_slot* slot = &run->ring[i % run->window];
    const char* path = run->names + run->offsets[i];
    if (run->closed || i < run->next_take) {  /* dropped while it waited for a node slot: never started */
        slot->failed = CLFS_OK;
        slot->fd = -1;
        slot->data = NULL;
        clfs_finish(run, i, -1);
        return -1;
    }
    int64_t start = clfs_now_ns();
    slot->start_ns = start;  /* under pool.mu: in_flight() never misses a started item */
    pthread_mutex_unlock(&clfs_pool.mu);
    clfs_operate(run, slot, path);
    int64_t took = clfs_now_ns() - start;
    pthread_mutex_lock(&clfs_pool.mu);
    clfs_finish(run, i, took);
    return took;
}

static void clfs_slot_wait(sem_t* slots) {
    while (sem_wait(slots) != 0 && errno == EINTR)
        ;
}

static void* clfs_worker(void* unused) {
    (void)unused;
    pthread_mutex_lock(&clfs_pool.mu);
    for (;;) {
        Py_ssize_t i;
        clfs_run* run = clfs_claim(&i);
        if (run == NULL) {
            if (clfs_closing.count > 0) {
                clfs_close_queued();
                continue;
            }
            pthread_cond_wait(&clfs_pool.work, &clfs_pool.mu);
            continue;
        }
        sem_t* slots = run->slots;
        if (slots == NULL) {
            clfs_run_item(run, i);
            continue;
        }
        /* the node's cap: waiting for a slot is not the source's time (start_ns is set after) */
        pthread_mutex_unlock(&clfs_pool.mu);
        clfs_slot_wait(slots);
        pthread_mutex_lock(&clfs_pool.mu);
        int done = 0;
        for (;;) {
            int slot_run = run->slot_run;
            clfs_run_item(run, i);
            if (++done >= slot_run)
                break;
            /* keep the slot for the next item of any run on the same slots */
            run = clfs_claim(&i);
            if (run == NULL)
                break;
            if (run->slots != slots) {  /* another cap (not in one process today): give this one back first */
                pthread_mutex_unlock(&clfs_pool.mu);
                sem_post(slots);
                slots = run->slots;
                if (slots != NULL)
                    clfs_slot_wait(slots);
                pthread_mutex_lock(&clfs_pool.mu);
                if (slots == NULL) {
                    clfs_run_item(run, i);
                    break;
                }
                done = 0;
            }
        }
        if (slots != NULL)
            sem_post(slots);
    }
    return NULL;
}

/* Make the pool at least `threads` strong (pool.mu held); the number running after. */
static int clfs_pool_grow(int threads) {
    if (!clfs_pool.forks_handled) {
        pthread_atfork(NULL, NULL, clfs_pool_after_fork);
        clfs_pool.forks_handled = 1;
    }
    if (clfs_pool.threads >= threads)
        return clfs_pool.threads;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 * 1024);  /* system calls only: a shallow stack */
    while (clfs_pool.threads < threads) {
        pthread_t thread;
        sigset_t all, old;
        sigfillset(&all);  /* signals go to Python's main thread, never to these */
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&thread, &attr, clfs_worker, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0)
            break;  /* make do with those running: the consumer runs what no thread takes */
        clfs_pool.threads++;
    }
    pthread_attr_destroy(&attr);
    return clfs_pool.threads;
}

/* A run of `count` items (it owns names and offsets, freed with it); NULL, both freed, without memory. */
static clfs_run* clfs_run_new(int kind, Py_ssize_t limit, Py_ssize_t count, char* names, Py_ssize_t* offsets,
                              Py_ssize_t window, void* slots, int slot_run, int64_t fast_ns, int inline_mode) {
    clfs_run* run = calloc(1, sizeof(clfs_run));
    clfs_slot* ring = calloc((size_t)window, sizeof(clfs_slot));
    if (run == NULL || ring == NULL) {
        free(run);
        free(ring);
        free(names);
        free(offsets);
        return NULL;
    }
    Py_ssize_t k;
    for (k = 0; k < window; k++)
        ring[k].fd = -1;
    run->kind = kind;
    run->limit = limit;
    run->count = count;
    run->names = names;
    run->offsets = offsets;
    run->window = window;
    run->ring = ring;
    run->min_ns = -1;
    run->waiting = -1;
    run->fast_ns = fast_ns;
    run->inline_mode = fast_ns > 0 && inline_mode;
    run->slots = (sem_t*)slots;
    run->slot_run = slot_run > 0 ? slot_run : 1;
    pthread_cond_init(&run->done, NULL);
    return run;
}

/* Start a run on the pool (its paths and ring already set); the run's first reference is the caller's. */
static void clfs_run_start(clfs_run* run, int threads) {
    pthread_mutex_lock(&clfs_pool.mu);
    clfs_pool_grow(threads);
    run->refs = 2;  /* the Python object's, the list's */
    run->next = NULL;
    clfs_run** link = &clfs_pool.head;
    while (*link != NULL)
        link = &(*link)->next;
    *link = run;
    /* wake as many threads as items may start (a thread that finds none waits again) */
    Py_ssize_t wake = run->inline_mode ? 0 : run->count < run->window ? run->count : run->window;
    if (wake >= clfs_pool.threads)
        pthread_cond_broadcast(&clfs_pool.work);
    else
        while (wake-- > 0)
            pthread_cond_signal(&clfs_pool.work);
    pthread_mutex_unlock(&clfs_pool.mu);
}

/* The consumer passes the items before i (pool.mu held). */
static void clfs_pass_to(clfs_run* run, Py_ssize_t i) {
    Py_ssize_t k;
    for (k = run->next_take; k < i && k < run->next_issue; k++) {
        clfs_slot* passed = &run->ring[k % run->window];
        if (passed->state == CLFS_SLOT_DONE && passed->index == k) {
            clfs_discard(passed);  /* a running one is discarded by its thread */
            pthread_cond_signal(&clfs_pool.work);
        }
    }
    if (run->next_take < i)
        run->next_take = i;
    if (run->next_issue < i)
        run->next_issue = i;  /* those passed before they started never start */
}

/* Item i's slot if it is back already (taken: the caller releases it), else NULL. Never waits,
   never runs an operation: the consumer calls it holding the GIL. */
static clfs_slot* clfs_run_try_take(clfs_run* run, Py_ssize_t i) {
    pthread_mutex_lock(&clfs_pool.mu);
    clfs_pass_to(run, i);
    clfs_slot* slot = &run->ring[i % run->window];
    if (!(slot->state == CLFS_SLOT_DONE && slot->index == i))
        slot = NULL;
    else
        run->next_take = i + 1;
    pthread_mutex_unlock(&clfs_pool.mu);
    return slot;
}

/* The consumer takes item i (passing those before it): its slot, DONE. Runs the item itself
   when no thread has started it (always, in inline mode); waits otherwise (no GIL held). */
static clfs_slot* clfs_run_take(clfs_run* run, Py_ssize_t i) {
    pthread_mutex_lock(&clfs_pool.mu);
    clfs_pass_to(run, i);
    clfs_slot* slot = &run->ring[i % run->window];
    while (!(slot->state == CLFS_SLOT_DONE && slot->index == i)) {
        if (!(run->next_issue == i && slot->state == CLFS_SLOT_FREE)) {
            /* a thread runs it, or its ring slot still holds a passed item that runs: wait for either */
            run->waiting = i;
            pthread_cond_wait(&run->done, &clfs_pool.mu);
            run->waiting = -1;
            continue;
        }
        /* not started (inline mode, no thread free, or none at all): run it here, holding a node slot */
        run->next_issue++;
        slot->state = CLFS_SLOT_RUNNING;
        slot->index = i;
        slot->start_ns = 0;
        run->refs++;
        sem_t* slots = run->slots;
        if (slots != NULL) {
            pthread_mutex_unlock(&clfs_pool.mu);
            clfs_slot_wait(slots);
            pthread_mutex_lock(&clfs_pool.mu);
        }
        int64_t took = clfs_run_item(run, i);
        if (slots != NULL)
            sem_post(slots);
        if (run->inline_mode && took >= run->fast_ns) {
            /* slow after all (a cold part of the tree): threads again, for the rest */
            run->inline_mode = 0;
            run->judged = run->judged_fast = 0;
            pthread_cond_broadcast(&clfs_pool.work);
        }
    }
    run->next_take = i + 1;  /* the window moves on once the slot is released */
    clfs_close_queued();  /* (the slot taken is the consumer's: no other thread touches it) */
    pthread_mutex_unlock(&clfs_pool.mu);
    return slot;
}

static int clfs_run_inline(clfs_run* run) {
    pthread_mutex_lock(&clfs_pool.mu);
    int mode = run->inline_mode;
    pthread_mutex_unlock(&clfs_pool.mu);
    return mode;
}

/* The consumer is done with a slot clfs_run_take gave (its data copied, its fd taken). */
static void clfs_run_release(clfs_run* run, clfs_slot* slot) {
    pthread_mutex_lock(&clfs_pool.mu);
    slot->state = CLFS_SLOT_FREE;
    slot->start_ns = 0;
    free(slot->data);
    slot->data = NULL;
    slot->fd = -1;
    if (!run->closed && run->next_issue < run->count)
        pthread_cond_signal(&clfs_pool.work);  /* the item a window ahead may start in this slot */
    pthread_mutex_unlock(&clfs_pool.mu);
}

/* The consumer drops the run: nothing more starts; what is back is discarded now, what runs when it ends. */
static void clfs_run_close(clfs_run* run) {
    Py_ssize_t k;
    pthread_mutex_lock(&clfs_pool.mu);
    if (!run->closed) {
        run->closed = 1;
        for (k = 0; k < run->window; k++)
            if (run->ring[k].state == CLFS_SLOT_DONE)
                clfs_discard(&run->ring[k]);
    }
    pthread_mutex_unlock(&clfs_pool.mu);
}

/* Close what dropped items left open (called without the GIL). */
static void clfs_close_dropped(void) {
    pthread_mutex_lock(&clfs_pool.mu);
    clfs_close_queued();
    pthread_mutex_unlock(&clfs_pool.mu);
}

/* The Python object goes: close, and drop its reference. */
static void clfs_run_drop(clfs_run* run) {
    clfs_run_close(run);
    pthread_mutex_lock(&clfs_pool.mu);
    clfs_run_unref(run);
    pthread_mutex_unlock(&clfs_pool.mu);
}

/* Items running now: up to `cap` (index, start_ns) pairs into out; their number. */
static Py_ssize_t clfs_run_in_flight(clfs_run* run, Py_ssize_t* index, int64_t* start, Py_ssize_t cap) {
    Py_ssize_t k, n = 0;
    pthread_mutex_lock(&clfs_pool.mu);
    for (k = 0; k < run->window && n < cap; k++) {
        clfs_slot* slot = &run->ring[k];
        if (slot->state == CLFS_SLOT_RUNNING && slot->start_ns != 0) {
            index[n] = slot->index;
            start[n] = slot->start_ns;
            n++;
        }
    }
    pthread_mutex_unlock(&clfs_pool.mu);
    return n;
}

static int64_t clfs_run_min_ns(clfs_run* run) {
    pthread_mutex_lock(&clfs_pool.mu);
    int64_t ns = run->min_ns;
    pthread_mutex_unlock(&clfs_pool.mu);
    return ns;
}

#endif
