"""A bar chart of subscribes and unsubscribes per day, as inline SVG made on the server
(no script, no CDN; allowed by the console's Content-Security-Policy).

Pure: days and counts in, markup out. Each bar has a ``<title>`` (a tooltip, read by
screen readers), and the page shows the same numbers as a table for who cannot see it.
"""

from __future__ import annotations

from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 720, 200
TOP, BOTTOM, LEFT, RIGHT = 12, 28, 34, 8


def day_chart(days: list[tuple[date, int, int]]) -> Markup:
    """``days``: [(day, subscribed, unsubscribed)], oldest first. Subscribes go up (green),
    unsubscribes down (red) from a middle line."""
    n = max(1, len(days))
    peak = max([1] + [max(s, u) for _, s, u in days])
    plot_w = WIDTH - LEFT - RIGHT
    half = (HEIGHT - TOP - BOTTOM) / 2
    mid = TOP + half
    step = plot_w / n
    bar = max(1.0, step * 0.7)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
             f' class="grafiek" role="img" aria-labelledby="grafiek-titel">',
             '<title id="grafiek-titel">Aanmeldingen (omhoog) en afmeldingen (omlaag)'
             f' per dag, de laatste {len(days)} dagen</title>',
             f'<line x1="{LEFT}" y1="{mid:.1f}" x2="{WIDTH - RIGHT}" y2="{mid:.1f}"'
             ' class="as"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 8}" class="schaal" text-anchor="end">{peak}</text>',
             f'<text x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" class="schaal"'
             f' text-anchor="end">{peak}</text>']
    for i, (day, sub, unsub) in enumerate(days):
        x = LEFT + i * step + (step - bar) / 2
        label = day.strftime("%d-%m")
        if sub:
            h = half * sub / peak
            parts.append(f'<rect x="{x:.1f}" y="{mid - h:.1f}" width="{bar:.1f}"'
                         f' height="{h:.1f}" class="aan"><title>{escape(label)}: {sub}'
                         f' aangemeld</title></rect>')
        if unsub:
            h = half * unsub / peak
            parts.append(f'<rect x="{x:.1f}" y="{mid:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                         f' class="af"><title>{escape(label)}: {unsub} afgemeld</title></rect>')
        if i % max(1, n // 6) == 0 or i == n - 1:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 8}" class="schaal"'
                         f' text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
