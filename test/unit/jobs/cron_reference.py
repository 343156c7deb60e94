#!/usr/bin/env python3
"""Brute-force reference for redcoord::cron_schedule (src/jobs/cron.cpp).

It walks real instants (UTC) one step at a time (a minute, or a second for the 6-field form),
converts each to local time with zoneinfo, and decides whether it fires:
  - its local time matches the fields, and it is not the second pass of a repeated local time
    (clocks went back) unless the hour field matches every hour; or
  - it is the end of a gap (clocks jumped forward) and one of the local times skipped by the gap
    matches the fields.
Days whose local date cannot match are skipped whole when no offset change lies in between.
Nothing here shares code or method with the C++ search (which jumps field by field, interval
by interval). Standard library only.

Run: python3 test/unit/jobs/cron_reference.py > /tmp/table.txt
and paste its output into test/unit/jobs/cron_test.cpp (the "reference table" section).
"""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

UTC = timezone.utc
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def field_values(text, lo, hi, names=()):
    def value(s):
        if s.isdigit():
            v = int(s)
        else:
            v = [n.upper() for n in names].index(s.upper()) + lo
        assert lo <= v <= hi, s
        return v

    out = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        step = int(step) if step else 1
        assert step >= 1
        if base in ("*", "?"):
            a, b = lo, hi
        elif "-" in base:
            a, b = (value(x) for x in base.split("-"))
        else:
            a = value(base)
            b = hi if "/" in part else a
        assert a <= b
        out.update(range(a, b + 1, step))
    return out


class Cron:
    def __init__(self, expr):
        fields = expr.split()
        if len(fields) == 1 and fields[0].lower() in MACROS:
            fields = MACROS[fields[0].lower()].split()
        assert len(fields) in (5, 6), expr
        self.has_seconds = len(fields) == 6
        if not self.has_seconds:
            fields = ["0"] + fields
        self.sec = field_values(fields[0], 0, 59)
        self.min = field_values(fields[1], 0, 59)
        self.hour = field_values(fields[2], 0, 23)
        self.dom = field_values(fields[3], 1, 31)
        self.month = field_values(fields[4], 1, 12, MONTHS)
        self.dow = {d % 7 for d in field_values(fields[5], 0, 7, DAYS)}
        self.dom_star = fields[3] in ("*", "?")
        self.dow_star = fields[5] in ("*", "?")
        self.every_hour = self.hour == set(range(24))

    def date_matches(self, d):
        if d.month not in self.month:
            return False
        by_dom = d.day in self.dom
        by_dow = (d.isoweekday() % 7) in self.dow
        if not self.dom_star and not self.dow_star:
            return by_dom or by_dow
        if not self.dom_star:
            return by_dom
        if not self.dow_star:
            return by_dow
        return True

    def matches(self, naive):
        return (self.date_matches(naive) and naive.hour in self.hour
                and naive.minute in self.min and naive.second in self.sec)


def offset(zone, u):
    return datetime.fromtimestamp(u, zone).utcoffset().total_seconds()


def fires(cron, zone, u):
    local = datetime.fromtimestamp(u, zone)
    if cron.matches(local):
        other = local.replace(fold=1 - local.fold)
        repeated = other.utcoffset() != local.utcoffset()
        if not repeated or cron.every_hour or local.fold == 0:
            return True
    before, after = offset(zone, u - 1), offset(zone, u)
    if after > before:  # u ends a gap: the local times [u + before, u + after) never happened
        naive = datetime.fromtimestamp(u, UTC).replace(tzinfo=None)
        t = naive + timedelta(seconds=before)
        end = naive + timedelta(seconds=after)
        while t < end:
            if cron.matches(t):
                return True
            t += timedelta(seconds=1)
    return False


def firings(expr, zone_name, after_iso, count, horizon_days):
    cron = Cron(expr)
    zone = ZoneInfo(zone_name)
    step = 1 if cron.has_seconds else 60
    start = int(datetime.fromisoformat(after_iso).replace(tzinfo=UTC).timestamp()) + 1
    u = -(-start // step) * step
    limit = start + horizon_days * 86400
    out = []
    while u < limit and len(out) < count:
        local = datetime.fromtimestamp(u, zone)
        if not cron.date_matches(local):
            midnight = (local.replace(tzinfo=None) + timedelta(days=1)).replace(
                hour=0, minute=0, second=0)
            jump = int((midnight - local.replace(tzinfo=None)).total_seconds())
            if jump > step and offset(zone, u - 1) == offset(zone, u + jump):
                u += jump - jump % step
                continue
        if fires(cron, zone, u):
            out.append(u)
        u += step
    return out


def iso(u):
    return datetime.fromtimestamp(u, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# (expression, zone, after (UTC), how many firings, horizon in days)
CASES = [
    # 5 and 6 fields, lists, ranges, steps, names, macros (UTC)
    ("*/15 * * * *", "UTC", "2026-01-01T00:00:00", 5, 10),
    ("0 9 * * MON-FRI", "UTC", "2026-01-02T10:00:00", 5, 30),
    ("30 8 1,15 * *", "UTC", "2026-01-20T00:00:00", 4, 120),
    ("0 0 1 */3 *", "UTC", "2026-02-10T00:00:00", 4, 400),
    ("15 10 * jan,JUL Sun", "UTC", "2026-01-01T00:00:00", 6, 400),
    ("*/20 9-17/4 * * *", "UTC", "2026-05-05T12:00:00", 7, 10),
    ("5/20 * * * *", "UTC", "2026-05-05T12:00:00", 4, 10),
    ("0 22 * * 5-7", "UTC", "2026-05-04T00:00:00", 4, 30),
    ("0 0 * * 7", "UTC", "2026-05-04T00:00:00", 2, 30),
    ("0 0 ? * 0", "UTC", "2026-05-04T00:00:00", 2, 30),
    ("@yearly", "UTC", "2026-06-01T00:00:00", 2, 800),
    ("@annually", "UTC", "2026-06-01T00:00:00", 1, 800),
    ("@monthly", "UTC", "2026-06-01T00:00:00", 2, 100),
    ("@weekly", "UTC", "2026-06-01T00:00:00", 2, 30),
    ("@daily", "UTC", "2026-06-01T00:00:00", 2, 10),
    ("@midnight", "UTC", "2026-06-01T00:00:00", 1, 10),
    ("@hourly", "UTC", "2026-06-01T00:30:00", 2, 10),
    ("*/10 * * * * *", "UTC", "2026-06-01T00:00:55", 4, 1),
    ("30 0 0 1 1 *", "UTC", "2026-06-01T00:00:00", 2, 800),
    ("0-5/2,30 * * * * *", "UTC", "2026-06-01T00:00:00", 5, 1),
    ("0 30 12 * * 1", "UTC", "2026-06-01T12:30:00", 2, 30),
    # day-of-month and day-of-week: either when both are restricted
    ("0 12 13 * 5", "UTC", "2026-02-01T00:00:00", 6, 60),
    ("0 12 13 * ?", "UTC", "2026-02-01T00:00:00", 3, 120),
    ("0 12 ? * 5", "UTC", "2026-02-01T00:00:00", 3, 60),
    ("0 0 */10 * 1", "UTC", "2026-03-01T00:00:00", 6, 60),
    # leap days and month ends
    ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00", 3, 4000),
    ("0 0 29 2 *", "Europe/Berlin", "2026-01-01T00:00:00", 2, 3000),
    ("0 0 31 * *", "UTC", "2026-01-01T00:00:00", 5, 400),
    ("0 0 30 * *", "UTC", "2026-01-01T00:00:00", 3, 400),
    ("59 23 28-31 2 *", "UTC", "2027-02-27T00:00:00", 3, 800),
    ("59 23 28-31 2 *", "UTC", "2028-02-27T00:00:00", 3, 800),
    # America/New_York 2026: gap on 03-08 (02:00 EST -> 03:00 EDT), repeat on 11-01
    # (02:00 EDT -> 01:00 EST)
    ("30 2 * * *", "America/New_York", "2026-03-06T00:00:00", 4, 10),
    ("0 2 * * *", "America/New_York", "2026-03-07T12:00:00", 2, 10),
    ("0,30 2,3 * * *", "America/New_York", "2026-03-07T12:00:00", 4, 10),
    ("*/15 * * * *", "America/New_York", "2026-03-08T06:30:00", 5, 1),
    ("*/20 2 * * *", "America/New_York", "2026-03-07T12:00:00", 2, 10),
    ("0/20 * * * * *", "America/New_York", "2026-03-08T06:59:00", 5, 1),
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00", 2, 10),
    ("0 1-3 * * *", "America/New_York", "2026-10-31T12:00:00", 3, 10),
    ("*/15 * * * *", "America/New_York", "2026-11-01T05:00:00", 10, 1),
    ("30 * * * *", "America/New_York", "2026-11-01T04:00:00", 4, 1),
    ("*/30 59 1 * * *", "America/New_York", "2026-11-01T05:00:00", 3, 3),
    ("*/30 59 * * * *", "America/New_York", "2026-11-01T05:00:00", 5, 1),
    # Europe/Berlin 2026: gap on 03-29 at 01:00 UTC, repeat on 10-25 at 01:00 UTC
    ("30 2 * * *", "Europe/Berlin", "2026-03-27T00:00:00", 4, 10),
    ("*/15 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00", 2, 10),
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T00:00:00", 3, 10),
    ("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00", 4, 1),
    ("0 */2 * * *", "Europe/Berlin", "2026-10-24T21:30:00", 4, 1),
    # southern hemisphere: Sydney leaves DST on 2026-04-05 (03:00 -> 02:00) and enters it on
    # 2026-10-04 (02:00 -> 03:00); Auckland leaves it on 2026-04-05 as well
    ("30 2 * * *", "Australia/Sydney", "2026-04-03T00:00:00", 4, 10),
    ("0 * * * *", "Australia/Sydney", "2026-04-04T14:30:00", 4, 1),
    ("30 2 * * *", "Australia/Sydney", "2026-10-02T00:00:00", 3, 10),
    ("0 3 * * SUN", "Pacific/Auckland", "2026-03-30T00:00:00", 3, 30),
    ("30 2 * * *", "Pacific/Auckland", "2026-04-03T00:00:00", 3, 10),
    # half-hour offset, no DST
    ("0 9 * * *", "Asia/Kolkata", "2026-06-01T00:00:00", 2, 10),
    ("30 0 * * *", "Asia/Kolkata", "2026-06-01T00:00:00", 2, 10),
    ("*/45 * * * *", "Asia/Kolkata", "2026-06-01T00:00:00", 4, 1),
    # past the zone files' last listed transition (2037): the rule of the files' footer
    ("30 2 * * *", "America/New_York", "2040-03-09T00:00:00", 4, 10),
    ("0 12 1 7 *", "Europe/Berlin", "2039-01-01T00:00:00", 2, 800),
    ("30 2 * * *", "Australia/Sydney", "2045-04-01T00:00:00", 3, 10),
    # never fires
    ("0 0 30 2 *", "UTC", "2026-01-01T00:00:00", 1, 30 * 365),
    ("0 0 31 4,6,9,11 *", "Europe/Berlin", "2026-01-01T00:00:00", 1, 30 * 365),
]


def check_transitions():
    """The published 2026 transitions, as zoneinfo has them (a sanity check of the data)."""
    expect = [("America/New_York", "2026-03-08T07:00:00", -5, -4),
              ("America/New_York", "2026-11-01T06:00:00", -4, -5),
              ("Europe/Berlin", "2026-03-29T01:00:00", 1, 2),
              ("Europe/Berlin", "2026-10-25T01:00:00", 2, 1)]
    for name, at, before, after in expect:
        u = int(datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp())
        zone = ZoneInfo(name)
        assert offset(zone, u - 1) == before * 3600 and offset(zone, u) == after * 3600, name


def main():
    check_transitions()
    print("// Generated by test/unit/jobs/cron_reference.py; do not edit by hand.")
    for expr, zone_name, after, count, horizon in CASES:
        got = firings(expr, zone_name, after, count, horizon)
        zone = ZoneInfo(zone_name)
        if not got:
            print(f'{{"{expr}", "{zone_name}", "{after}Z", {{}}}},  // none in {horizon} days')
            continue
        locals_ = ", ".join(datetime.fromtimestamp(u, zone).strftime("%m-%d %H:%M:%S %Z")
                            for u in got)
        print(f"// {locals_}")
        print(f'{{"{expr}", "{zone_name}", "{after}Z",')
        print("  {" + ", ".join(f'"{iso(u)}"' for u in got) + "}},")


if __name__ == "__main__":
    main()
