/* clockshift: an LD_PRELOAD shim that moves the wall clock.
 *
 * CLOCKSHIFT=<seconds> (may be negative) is added to CLOCK_REALTIME as
 * clock_gettime, gettimeofday and time report it, and taken off absolute
 * CLOCK_REALTIME sleeps, so a process sees a wall clock that is ahead or
 * behind while its monotonic clocks, timeouts and sleeps stay true.
 * libfaketime does this too, but its 0.9.10 (Debian 12) makes Python
 * 3.11's time.sleep fail with EINVAL when the monotonic clock is left
 * alone (its issue #426).
 *
 * cc -shared -fPIC -O2 -o clockshift.so clockshift.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static time_t shift;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);
static int (*real_clock_nanosleep)(clockid_t, int, const struct timespec *,
                                   struct timespec *);

__attribute__((constructor)) static void setup(void)
{
    const char *value = getenv("CLOCKSHIFT");
    shift = value ? (time_t)atoll(value) : 0;
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    real_gettimeofday = dlsym(RTLD_NEXT, "gettimeofday");
    real_clock_nanosleep = dlsym(RTLD_NEXT, "clock_nanosleep");
}

static int is_wall(clockid_t id)
{
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE
        || id == CLOCK_TAI;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (!real_clock_gettime)
        setup();
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && is_wall(id))
        ts->tv_sec += shift;
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    if (!real_gettimeofday)
        setup();
    int rc = real_gettimeofday(tv, tz);
    if (rc == 0)
        tv->tv_sec += shift;
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int clock_nanosleep(clockid_t id, int flags, const struct timespec *req,
                    struct timespec *rem)
{
    if (!real_clock_nanosleep)
        setup();
    if ((flags & TIMER_ABSTIME) && is_wall(id) && req) {
        struct timespec real = *req;
        real.tv_sec -= shift;
        return real_clock_nanosleep(id, flags, &real, rem);
    }
    return real_clock_nanosleep(id, flags, req, rem);
}
