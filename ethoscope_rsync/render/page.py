"""The status page (``GET /`` for a browser): the pass, the destinations' usage with their forecast,
and one row per device with the strip of its last passes. Pure; one string of HTML, inline CSS and
SVG (:mod:`ethoscope_rsync.render.svg`), no script, no external asset; readable on a phone.
"""
from __future__ import annotations

from ethoscope_rsync.state import forecast
from ethoscope_rsync.render import escape, offsite, verdict
from ethoscope_rsync.render.humanize import format_age, format_days, format_time, human_size
from ethoscope_rsync.state.health import PAUSED, STALE, UNKNOWN
from ethoscope_rsync.state.model import COMPLETED, ERROR, QUEUED, RUNNING, lag
from ethoscope_rsync.render.svg import MAX_POINTS, strip, usage_chart
from ethoscope_rsync.state.views import DeviceView, View, last_backup_time, view, worst_lag

_STATE_CLASS = {COMPLETED: "ok", ERROR: "err", RUNNING: "run", QUEUED: "queue"}

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.2em 0 .4em}
.summary{margin:.3em 0 1em;color:#444}
table{border-collapse:collapse;width:100%}
th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;white-space:nowrap}
.bar{width:10em;height:.9em;background:#eee;border-radius:3px;overflow:hidden;display:inline-block}
.bar span{display:block;height:100%;background:#4a90d9}
.ok{color:#1a7f37}.err{color:#c62828}.run{color:#1565c0}.queue{color:#777}
.stale{background:#fff4e5}.failing{background:#fdecea}.paused{background:#f3f3f3}.stl{color:#b45309;font-weight:bold}
.verdict{font-size:1.3em;margin:0 0 .4em;padding:.4em .6em;border-radius:4px}.v-ok{background:#e6f4ea;color:#1a7f37}
.v-problem{background:#fdecea;color:#b71c1c}.v-unknown{background:#f3f3f3;color:#444}
#problems{margin:.2em 0 1em;padding-left:1.4em}#problems li{margin:.15em 0}
.small{font-size:.85em;color:#666}
.strip{display:block;margin-top:.3em}.p-ok{fill:#2e9e4f}.p-none{fill:#aaa}.p-err{fill:#d32f2f}
.dest{margin:.4em 0 1em;max-width:40em}.dest p{margin:.2em 0}.warn{color:#c62828;font-weight:bold}
.chart{width:100%;height:auto;display:block}.c-bg{fill:#fafafa;stroke:#ddd}
.c-cap{stroke:#d32f2f;stroke-dasharray:4 3}.c-used{fill:none;stroke:#1565c0;stroke-width:2}
.c-fc{stroke:#1565c0;stroke-dasharray:6 4;stroke-width:1.5}.c-txt{font-size:11px;fill:#555}
@media (max-width:40em){body{margin:.6em}table,tbody,tr,td{display:block}thead,td.prog{display:none}
tr.device{border-bottom:2px solid #ccc;padding:.3em 0}td{border:none;padding:.15em .2em}td.num{text-align:left}}
"""


_e = escape.html        # every text of the page, whatever a device sent


def _pass_summary(v: View) -> str:
    run = v.status.run
    if not v.has_status:
        return "No pass since boot." if v.devices else "No backup pass yet."
    if run.active:
        message = run.message.rstrip(".")
        return "Pass in progress: %d of %d devices done, %d failed.%s" % (
            run.devices_done, run.devices_total, run.devices_failed,
            (" %s." % (message[:1].upper() + message[1:])) if message else "")
    return "Idle. Last pass: %s (%s)." % (run.outcome or "unknown", format_time(run.ended) or "-")


def _verified(v: View, key: str, now: float) -> str:
    checked = v.history.verification.get(key)
    if checked is None or not checked.at:
        return ""
    if checked.damaged_count:
        return '<br><span class="err">%d damaged file(s) found by verify %s ago</span>' % (
            checked.damaged_count, _e(format_age(now - checked.at)))
    return '<br><span class="small">verified %s ago: %d files sound</span>' % (
        _e(format_age(now - checked.at)), checked.files)


def _html_row(d: DeviceView, v: View, now: float, strips: bool, judged=None) -> str:
    state, pct, last = d.state, d.percent, d.past.last_success
    judgement = judged.judgement if judged is not None else (STALE if d.stale else "")
    row = {STALE: " stale", PAUSED: " paused", "failing": " failing"}.get(judgement, "")
    css = "stl" if judgement == STALE else _STATE_CLASS.get(state, "")
    label = "paused" + (": " + judged.reason if judged.reason else "") if judgement == PAUSED else state or "-"
    when = ('%s <span class="small">(%s ago)</span>' % (_e(format_time(last)), _e(format_age(now - last)))
            if last else "never")
    protected = d.past.protected_up_to
    when += ('<br><span class="small lag">data on the node up to %s (lag %s)</span>'
             % (_e(format_time(protected)), _e(format_age(lag(protected, now)))) if protected else "")
    message = d.message
    error = (d.run.error if d.run else "") or d.past.last_error
    if state == ERROR and error and error != message:
        message = (message + ": " if message else "") + error
    return ('<tr class="device%s" data-id="%s"><td><b>%s</b><br><span class="small">%s %s</span>%s</td>'
            '<td class="%s">%s%s%s</td>'
            '<td class="prog"><span class="bar" title="%.0f%%"><span style="width:%.1f%%"></span></span> %.0f%%</td>'
            '<td>%s</td><td class="num">%s<br><span class="small">%d files</span></td><td>%s</td></tr>'
            % (row, _e(d.key), _e(d.name or d.key), _e(d.key), _e(d.address),
               _verified(v, d.key, now), css, escape.html(label),
               " (stale)" if d.stale else "", strip(d.past.passes) if strips else "",
               pct, pct, pct, when, _e(human_size(d.bytes_copied)), d.files_copied, _e(message)))


def destinations_html(v: View, horizon_days: float, charts: bool = True) -> str:
    """One block per destination file system: usage, growth, days to full, and the chart."""
    samples = v.history.disk
    if not samples:
        return ""
    parts = ['<h2>Destinations</h2>']
    latest = samples[-1]
    found = forecast.forecasts(samples)
    for kinds in forecast.file_systems(latest.usage).values():
        f = found[kinds[0]]
        used, raw = sum(found[k].used for k in kinds), sum(found[k].raw for k in kinds)
        paths = ", ".join("%s %s" % (k, v.history.destinations.get(k, "")) for k in kinds)
        if f.per_day is None:
            growth = "growth: not known yet (needs %d hours of passes)" % (forecast.MIN_SPAN // 3600)
        elif f.days is None:
            growth = "not growing"
        else:
            growth = '%s a day: <span class="%s">full in %s</span>' % (
                _e(human_size(f.per_day)), "warn" if f.short(horizon_days) else "", _e(format_days(f.days)))
        mirror = " (%s of it the raw database mirror)" % human_size(raw) if raw else ""
        parts.append('<div class="dest" data-kinds="%s"><p><b>%s</b></p><p>%s used by backups%s, %s free of %s; %s</p>'
                     % (_e(" ".join(kinds)), _e(paths), _e(human_size(used)), _e(mirror),
                        _e(human_size(f.free)), _e(human_size(f.total)), growth))
        if charts:
            label = "%s: %s used, %s" % (" and ".join(kinds), human_size(used),
                                         "full in " + format_days(f.days) if f.days is not None else "not filling")
            parts.append(usage_chart(forecast.usage_series(samples, kinds, MAX_POINTS), used + f.free, f.per_day,
                                     horizon_days, label))
        parts.append("</div>")
    return "".join(parts)


def verdict_html(judged, now: float) -> str:
    """The verdict first: its head, then each problem on its own line."""
    head, clauses = verdict.parts(judged, now)
    if judged.level == UNKNOWN:
        head, clauses = verdict.line(judged, now), []
    items = "".join("<li>%s</li>" % _e(c) for c in clauses)
    return ('<h1 id="verdict" class="verdict v-%s">%s</h1><ul id="problems">%s</ul>'
            % (judged.level, _e(head), items))


def render_html(status, history, now: float, stale_after: float, horizon_days: float, refresh: int = 5,
                charts: bool = True, overdue_after: float = 0.0, idle_refresh: int = 30) -> str:
    """A readable page: the verdict, the pass, destinations, one row per device, problems first.
    It refreshes itself every `refresh` seconds while a pass runs, every `idle_refresh` otherwise (a
    wall display never freezes; an unchanged page costs a 304). `charts` False leaves out the strips
    and usage charts (the benchmark's baseline)."""
    v = view(status, history, now, stale_after, files=False)
    judged = verdict.judged(status, history, now, stale_after, overdue_after, v=v)
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">',          # no /favicon.ico request from a browser
             '<meta http-equiv="refresh" content="%d">' % int(refresh if v.status.run.active else idle_refresh)]
    parts.append("<title>%s</title><style>%s</style></head><body>" % (_e(verdict.title(judged)), _CSS))
    parts.append(verdict_html(judged, now))
    worst, laggard = worst_lag(v, now)
    parts.append('<p class="summary" id="summary">%s Last completed backup: %s. %d devices, %d stale.%s</p>'
                 % (_e(_pass_summary(v)), _e(format_time(last_backup_time(v)) or "never"), len(v.devices),
                    sum(1 for d in v.devices.values() if d.stale),
                    _e(" Worst lag: %s (%s)." % (format_age(worst), laggard)) if worst is not None else ""))
    parts.append(destinations_html(v, horizon_days, charts))
    parts.append(offsite.page(v.history.offsite, now))
    parts.append('<table id="devices"><thead><tr><th>Device</th><th>State, last passes</th><th>Progress</th>'
                 '<th>Last success</th><th>Copied</th><th>Error / message</th></tr></thead><tbody>')
    parts.extend(_html_row(v.devices[h.key], v, now, charts, h) for h in judged.devices)
    parts.append("</tbody></table>")
    parts.append('<p class="small">ethoscope backup, generated %s. JSON: <a href="status">/status</a>, '
                 '<a href="metrics">/metrics</a>.</p></body></html>' % _e(format_time(now)[:16]))
    return "".join(parts)
