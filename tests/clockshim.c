/* A wall-clock step for the processes it is preloaded into (LD_PRELOAD).
 *
 * CLOCK_REALTIME (clock_gettime, gettimeofday, time) and the boot time in
 * /proc/stat ("btime") move together by the number of seconds written in
 * the file named by HUEYQ_CLOCK_OFFSET_FILE, re-read at most every 20 ms, as
 * the kernel moves both when the clock is set (NTP after boot on a device
 * without an RTC). CLOCK_MONOTONIC, CLOCK_BOOTTIME and the start ticks in
 * /proc/<pid>/stat do not move, as on a real clock step.
 *
 * libfaketime would do the first half, but with its monotonic clock left
 * alone (FAKETIME_DONT_FAKE_MONOTONIC) its clock_nanosleep() breaks
 * Python 3.11's time.sleep() (libfaketime issue #426), and it leaves btime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_ns;
static long long next_read_ns;

static long long mono_ns(void) {
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long offset(void) {
    long long now = mono_ns();
    if (now < __atomic_load_n(&next_read_ns, __ATOMIC_RELAXED))
        return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&next_read_ns, now + 20000000LL, __ATOMIC_RELAXED);
    const char *path = getenv("HUEYQ_CLOCK_OFFSET_FILE");
    if (path == NULL)
        return 0;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
    char buf[64] = {0};
    long n = (long)syscall(SYS_read, fd, buf, sizeof(buf) - 1);
    syscall(SYS_close, fd);
    if (n > 0)
        __atomic_store_n(&offset_ns, (long long)(strtod(buf, NULL) * 1e9),
                         __ATOMIC_RELAXED);
    return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
}

static void shift(struct timespec *ts) {
    long long t = ts->tv_sec * 1000000000LL + ts->tv_nsec + offset();
    ts->tv_sec = t / 1000000000LL;
    ts->tv_nsec = t % 1000000000LL;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int rc = (int)syscall(SYS_clock_gettime, clock, ts);
    if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE))
        shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

/* /proc/stat with btime moved by the offset, as an anonymous file. */
static int shifted_proc_stat(int flags) {
    int src = (int)syscall(SYS_openat, AT_FDCWD, "/proc/stat", flags, 0);
    if (src < 0)
        return src;
    static char buf[1 << 20];
    long len = 0, n;
    while (len < (long)sizeof(buf) - 1 &&
           (n = (long)syscall(SYS_read, src, buf + len,
                              sizeof(buf) - 1 - len)) > 0)
        len += n;
    syscall(SYS_close, src);
    buf[len] = 0;
    int out = memfd_create("proc-stat", MFD_CLOEXEC);
    if (out < 0)
        return out;
    char *line = strstr(buf, "\nbtime ");
    if (line == NULL) {
        write(out, buf, len);
    } else {
        line += 1;
        char *end = strchr(line, '\n');
        long long btime = atoll(line + 6) + offset() / 1000000000LL;
        write(out, buf, line - buf);
        dprintf(out, "btime %lld", btime);
        if (end != NULL)
            write(out, end, len - (end - buf));
    }
    lseek(out, 0, SEEK_SET);
    return out;
}

static int opens_proc_stat(const char *path) {
    return path != NULL && strcmp(path, "/proc/stat") == 0;
}

#define OPEN_WRAPPER(name, real_args, real_call)                            \
    int name real_args {                                                    \
        mode_t mode = 0;                                                    \
        if (flags & (O_CREAT | O_TMPFILE)) {                                \
            va_list ap;                                                     \
            va_start(ap, flags);                                            \
            mode = va_arg(ap, mode_t);                                      \
            va_end(ap);                                                     \
        }                                                                   \
        if (opens_proc_stat(path))                                          \
            return shifted_proc_stat(flags);                                \
        return real_call;                                                   \
    }

OPEN_WRAPPER(open, (const char *path, int flags, ...),
             (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode))
OPEN_WRAPPER(open64, (const char *path, int flags, ...),
             (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode))
OPEN_WRAPPER(openat, (int dir, const char *path, int flags, ...),
             (int)syscall(SYS_openat, dir, path, flags, mode))
OPEN_WRAPPER(openat64, (int dir, const char *path, int flags, ...),
             (int)syscall(SYS_openat, dir, path, flags, mode))
