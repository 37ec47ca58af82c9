/* SPDX-License-Identifier: MIT */
/* clock: civil-date arithmetic is done by hand (days from 1970-01-01 in the proleptic
 * Gregorian calendar) so that parsing never depends on the process time zone. */
#include "ps/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t ps_clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 for a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (m + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, size_t len, size_t *pos, int count, int *out)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        if (*pos >= len || s[*pos] < '0' || s[*pos] > '9')
            return -1;
        v = v * 10 + (s[*pos] - '0');
        (*pos)++;
    }
    *out = v;
    return 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dm[m - 1];
}

ps_status ps_time_parse(const char *s, size_t len, int64_t *out)
{
    size_t p = 0;
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    if (digits(s, len, &p, 4, &y) || p >= len || s[p++] != '-' || digits(s, len, &p, 2, &mo) ||
        p >= len || s[p++] != '-' || digits(s, len, &p, 2, &d))
        return PS_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return PS_EINVAL;
    int64_t offset_min = 0;
    if (p < len && (s[p] == 'T' || s[p] == 't' || s[p] == ' ')) {
        p++;
        if (digits(s, len, &p, 2, &h) || p >= len || s[p++] != ':' || digits(s, len, &p, 2, &mi))
            return PS_EINVAL;
        if (p < len && s[p] == ':') {
            p++;
            if (digits(s, len, &p, 2, &sec))
                return PS_EINVAL;
            if (p < len && (s[p] == '.' || s[p] == ',')) {
                p++;
                int n = 0;
                while (p < len && s[p] >= '0' && s[p] <= '9') {
                    if (n < 3)
                        ms = ms * 10 + (s[p] - '0');
                    n++;
                    p++;
                }
                if (n == 0 || n > 9)
                    return PS_EINVAL;
                for (; n < 3; n++)
                    ms *= 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 59) /* no leap seconds: Unix time has none */
            return PS_EINVAL;
        if (p < len && (s[p] == 'Z' || s[p] == 'z')) {
            p++;
        } else if (p < len && (s[p] == '+' || s[p] == '-')) {
            int sign = s[p++] == '-' ? -1 : 1, oh, om;
            if (digits(s, len, &p, 2, &oh))
                return PS_EINVAL;
            if (p < len && s[p] == ':')
                p++;
            if (digits(s, len, &p, 2, &om) || oh > 23 || om > 59)
                return PS_EINVAL;
            offset_min = sign * (oh * 60 + om);
        }
    }
    if (p != len)
        return PS_EINVAL;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    /* an offset can carry a written year 9999 or 0000 out of the four-digit range */
    if (secs < days_from_civil(0, 1, 1) * 86400 || secs >= days_from_civil(10000, 1, 1) * 86400)
        return PS_EINVAL;
    *out = secs * 1000 + ms;
    return PS_OK;
}

static void two(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

char *ps_time_format(int64_t ms, char *out)
{
    int64_t secs = ms / 1000; /* floor division without overflow near INT64_MIN */
    int msr = (int)(ms % 1000);
    if (msr < 0) {
        msr += 1000;
        secs--;
    }
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int rem = (int)(secs - days * 86400);
    /* the date of the last call on this thread: API answers carry many times of few days */
    static _Thread_local int64_t last_days = INT64_MIN;
    static _Thread_local char last_date[11];
    if (days != last_days) {
        int64_t y;
        int m, d;
        civil_from_days(days, &y, &m, &d);
        if (y < 0 || y > 9999) { /* rare: let printf handle signs and wide years */
            snprintf(out, PS_TIME_BUF, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
                     rem / 3600, rem % 3600 / 60, rem % 60, msr);
            return out;
        }
        two(last_date, (int)(y / 100));
        two(last_date + 2, (int)(y % 100));
        last_date[4] = '-';
        two(last_date + 5, m);
        last_date[7] = '-';
        two(last_date + 8, d);
        last_date[10] = 'T';
        last_days = days;
    }
    /* the hot path of every API timestamp: fixed-width digits, no printf */
    memcpy(out, last_date, 11);
    two(out + 11, rem / 3600);
    out[13] = ':';
    two(out + 14, rem % 3600 / 60);
    out[16] = ':';
    two(out + 17, rem % 60);
    out[19] = '.';
    out[20] = (char)('0' + msr / 100);
    two(out + 21, msr % 100);
    memcpy(out + 23, "Z", 2);
    return out;
}

void ps_time_json(ps_buf *out, int64_t ms)
{
    char tb[PS_TIME_BUF];
    ps_buf_putc(out, '"');
    ps_buf_puts(out, ps_time_format(ms, tb));
    ps_buf_putc(out, '"');
}
