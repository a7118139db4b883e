// The AP dashboard: tiles, a chart, the invoice list and its drill-down, kept live by /api/events.
"use strict";

const HEADERS = { "X-Requested-With": "dashboard", "Accept": "application/json" };
const COLORS = getComputedStyle(document.documentElement);
// A page is asked for by `before` (the row it starts after), not by offset: releasing invoices from a
// filtered list would move others from the next page onto this one, never seen. `pages` holds each
// page's `before` down to this one, for Previous; `shown` the rows on the pages above.
// `missed` starts true: the first list is read before the stream is open, and a change made between
// the two never came on it, so the stream's first `open` reads the list again.
const state = { query: {}, limit: 50, pages: [null], shown: [0], wanted: { pages: [null], shown: [0] }, next: null,
                listed: 0, asked: 0, clicked: 0, total: 0, me: null, open: null, refetch: null, missed: true };
const $ = (selector) => document.querySelector(selector);

// Characters that show nothing, or only a space, where a value is read: the ones api/schemas.py's
// _HIDDEN keeps out of a Sampro invoice id (controls, fillers, variation selectors, zero-width,
// format and bidi marks, spaces other than the space, private use), which
// tests/unit/api/test_dashboard_script.py checks this class against. Each is shown as its code
// point, ⟨U+2800⟩: "INV-778" and a braille blank read as the paid INV-778 in the list, a vendor's
// "INV-\u202E877" as INV-778, and a PDI in a value closed the isolate around it.
// Two kinds stay as they are: the blanks HTML shows as a space (tab, line feed, form feed, carriage
// return: the payload's lines, a clerk's comment), and ZWJ and ZWNJ between two letters, marks or
// emoji beyond ASCII, where scripts and emoji sequences need them; elsewhere they join nothing.
const HIDDEN = String.raw`[\x00-\x08\x0b\x0e-\x1f\x7f-\xa0\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u115f\u1160\u1680\u17b4\u17b5\u180b-\u180f\u2000-\u200b\u200e\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u2800\u3000\u3164\ue000-\uf8ff\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}\u{f0000}-\u{10ffff}]`;
const JOINABLE = String.raw`[[\p{L}\p{M}\p{Extended_Pictographic}\p{Emoji_Modifier}]--\p{ASCII}]`;
const UNSEEN = new RegExp(String.raw`${HIDDEN}|(?<!${JOINABLE})[\u200c\u200d]|[\u200c\u200d](?!${JOINABLE})`, "gv");
const visible = (value) => String(value).replace(UNSEEN,
  (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`);

// A value a vendor chose, inside a line of ours, isolated as Unicode advises (FSI ... PDI): what
// is left of its right-to-left text then reads within it, not across the values after it.
const isolated = (value) => `\u2068${value === null || value === undefined ? "–" : visible(value)}\u2069`;

// `styles` go through CSSOM: the Content-Security-Policy refuses style attributes.
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined) continue;
    if (name === "styles") Object.assign(node.style, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : visible(child ?? ""));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...HEADERS, ...(options.headers || {}) } });
  if (response.status === 401) {
    location.assign("/login?next=/dashboard");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function statusBadge(status) {
  return el("span", { class: "status", "data-status": status }, status);
}

// Times in UTC, as the list's date filter reads days: shown in local time, a clerk west of UTC
// filtering on a day saw rows of the evening before, and missed the evening of the day.
function utc(moment) {
  return new Date(moment).toISOString().slice(0, 16).replace("T", " ");
}

function age(since) {
  if (!since) return "–";
  const seconds = Math.max(0, (Date.now() - new Date(since).getTime()) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// -- tiles and charts ------------------------------------------------------------------------
function setTile(name, value) {
  const tile = document.querySelector(`[data-tile="${name}"]`);
  const shown = String(value);
  const target = tile.querySelector(".value");
  if (target.textContent !== shown) {
    target.textContent = shown;
    tile.classList.remove("flash");
    void tile.offsetWidth;  // restart the animation
    tile.classList.add("flash");
  }
}

function showKpi(kpi) {
  state.kpi = kpi;
  setTile("total", kpi.total);
  for (const status of ["sent_to_rpa", "waiting_for_po", "entered", "manual_review", "awaiting_receipt", "bad_invoice",
                        "po_not_found", "rpa_failed", "released"]) {
    setTile(status, kpi.by_status[status] ?? 0);
  }
  setTile("oldest_waiting", age(kpi.oldest_waiting_since));
  const verdicts = kpi.verdicts_per_minute.reduce((a, b) => a + b, 0);
  setTile("verdicts_per_minute", (verdicts / kpi.verdicts_per_minute.length).toFixed(1));
  drawTimeline(kpi);
  drawReasons(kpi.by_reason);
  showApKpi(kpi.ap);
}

function drawTimeline(kpi) {
  const svg = $("#timeline");
  const statuses = Object.keys(kpi.transitions_per_minute).filter(
    (s) => kpi.transitions_per_minute[s].some((n) => n > 0));
  const minutes = kpi.verdicts_per_minute.length;
  const totals = Array.from({ length: minutes }, (_, i) =>
    statuses.reduce((sum, s) => sum + kpi.transitions_per_minute[s][i], 0));
  const top = Math.max(1, ...totals);
  const width = 600 / minutes, height = 140;
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  for (let i = 0; i < minutes; i++) {
    let y = height;
    for (const status of statuses) {
      const count = kpi.transitions_per_minute[status][i];
      if (!count) continue;
      const h = (count / top) * (height - 10);
      y -= h;
      const bar = document.createElementNS(ns, "rect");
      for (const [k, v] of Object.entries({ x: i * width + 1, y, width: width - 2, height: h,
                                            fill: COLORS.getPropertyValue(`--${status}`).trim() || "#888" })) {
        bar.setAttribute(k, v);
      }
      const title = document.createElementNS(ns, "title");
      title.textContent = `${minutes - 1 - i} min ago: ${count} ${status}`;
      bar.append(title);
      svg.append(bar);
    }
  }
  for (const [x, text, anchor] of [[0, "-60 min", "start"], [600, "now", "end"], [300, `max ${top}/min`, "middle"]]) {
    const label = document.createElementNS(ns, "text");
    for (const [k, v] of Object.entries({ x, y: 158, "font-size": 11, fill: "#5c6b7a", "text-anchor": anchor })) {
      label.setAttribute(k, v);
    }
    label.textContent = text;
    svg.append(label);
  }
  $("#legend").replaceChildren(...statuses.map((s) =>
    el("span", {}, el("i", { styles: { background: `var(--${s})` } }), s)));
}

function drawReasons(byReason) {
  drawBars($("#reasons"), Object.entries(byReason).sort((a, b) => b[1] - a[1]), "No findings.");
}

// One labelled bar per entry ([label, count]), as long as its count against the largest.
function drawBars(target, entries, empty) {
  const top = Math.max(1, ...entries.map(([, n]) => n));
  target.replaceChildren(...entries.map(([label, count]) =>
    el("div", { "data-reason": label }, label, el("span", { class: "bar", styles: { width: `${(count / top) * 100}%` } }),
       count)));
  if (!entries.length) target.append(empty);
}

// -- AP's own figures over the last 30 days ------------------------------------------------------
function percent(rate) {
  return rate === null ? "–" : `${Math.round(rate * 100)} %`;
}

function duration(seconds) {
  if (seconds === null) return "–";
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function showApKpi(ap) {
  setTile("ap_touchless", percent(ap.touchless_rate));
  $('[data-tile="ap_touchless"] .note').textContent = `${ap.entered_touchless} of ${ap.entered} entered`;
  setTile("ap_first_pass", percent(ap.first_pass_match_rate));
  $('[data-tile="ap_first_pass"] .note').textContent = `${ap.first_pass_ready} of ${ap.judged} judged`;
  setTile("ap_cleared_by_rejudgement", ap.holds_cleared_by_rejudgement);
  setTile("ap_cleared_by_clerk", ap.holds_cleared_by_clerk);
  setTile("ap_cycle_median", duration(ap.cycle_time_median_seconds));
  setTile("ap_cycle_p90", duration(ap.cycle_time_p90_seconds));
  setTile("ap_open_exceptions", ap.open_exceptions);
  drawDaily(ap);
  drawBars($("#ap-ages"), Object.entries(ap.open_exceptions_by_age), "No open exceptions.");
  drawBars($("#ap-exception-reasons"), Object.entries(ap.open_exceptions_by_reason).sort((a, b) => b[1] - a[1]),
           "No open exceptions.");
}

function svgElement(tag, attributes) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// Stacked bars per UTC day, as the per-minute timeline: touchless entries below, touched ones above.
function drawDaily(ap) {
  const svg = $("#ap-daily");
  const series = [["touchless", ap.entered_touchless_per_day, "--entered"],
                  ["after an AP action", ap.entered_touched_per_day, "--released"]];
  const days = ap.entered_touchless_per_day.length;
  const top = Math.max(1, ...ap.entered_touchless_per_day.map((n, i) => n + ap.entered_touched_per_day[i]));
  const width = 600 / days, height = 140;
  const first = new Date(ap.period_start).getTime();
  svg.replaceChildren();
  for (let i = 0; i < days; i++) {
    const day = new Date(first + i * 86400000).toISOString().slice(0, 10);
    let y = height;
    for (const [name, counts, color] of series) {
      if (!counts[i]) continue;
      const h = (counts[i] / top) * (height - 10);
      y -= h;
      const bar = svgElement("rect", { x: i * width + 1, y, width: width - 2, height: h,
                                       fill: COLORS.getPropertyValue(color).trim() || "#888", "data-day": day });
      const title = svgElement("title", {});
      title.textContent = `${day}: ${counts[i]} ${name}`;
      bar.append(title);
      svg.append(bar);
    }
  }
  for (const [x, text, anchor] of [[0, ap.period_start.slice(0, 10), "start"], [600, "today", "end"],
                                   [300, `max ${top}/day`, "middle"]]) {
    const label = svgElement("text", { x, y: 158, "font-size": 11, fill: "#5c6b7a", "text-anchor": anchor });
    label.textContent = text;
    svg.append(label);
  }
  $("#ap-daily-legend").replaceChildren(...series.map(([name, , color]) =>
    el("span", {}, el("i", { styles: { background: `var(${color})` } }), name)));
}

// -- the invoice list ------------------------------------------------------------------------
function invoiceRow(row) {
  const tr = el("tr", { "data-invoice": row.invoice_id, "data-version": row.invoice_version },
    el("td", {}, row.invoice_id), el("td", {}, row.invoice_version), el("td", {}, row.po_number ?? "–"),
    el("td", {}, row.vendor_id ?? "–"), el("td", {}, row.invoice_number ?? "–"),
    el("td", { class: "status-cell" }, statusBadge(row.status)), el("td", {}, row.http_status ?? "–"),
    el("td", {}, row.reason_codes.join(", ") || "–"),
    el("td", {}, row.decided_at ? utc(row.decided_at) : "–"));
  tr.addEventListener("click", () => openInvoice(row.invoice_id, row.invoice_version));
  if (state.open && state.open.invoice_id === row.invoice_id) tr.classList.add("selected");
  return tr;
}

// Only the answer to the last request is shown: a refetch of the live feed, a filter or a page
// turn may overtake another, and the pager stays still meanwhile (a double click on Next pushed one
// page twice). A page turn takes effect with its answer: failed, the list stays where it was. A
// refetch asks for the page last asked for, which a turn or a filter may not have shown yet.
async function loadInvoices(pages = state.wanted.pages, shown = state.wanted.shown) {
  const asked = ++state.asked;
  state.wanted = { pages, shown };
  const before = pages[pages.length - 1];
  const params = new URLSearchParams({ ...state.query, limit: state.limit, ...(before ? { before } : {}) });
  $("#prev").disabled = $("#next").disabled = true;
  try {
    const page = await api(`/api/invoices?${params}`);
    if (asked !== state.asked) return;
    state.pages = pages;
    state.shown = shown;
    state.total = page.total;
    state.next = page.next_before;
    state.listed = page.items.length;
    $("#invoices tbody").replaceChildren(...page.items.map(invoiceRow));
    const first = shown[shown.length - 1];
    $("#page-info").textContent = page.items.length
      ? `${first + 1}–${first + page.items.length} of ${page.total}` : page.total ? `none after ${first}` : "no invoices";
    $("#list-error").hidden = true;
  } catch (error) {
    if (asked !== state.asked) return;
    state.wanted = { pages: state.pages, shown: state.shown };
    $("#list-error").textContent = visible(error.message);
    $("#list-error").hidden = false;
  }
  $("#prev").disabled = state.pages.length === 1;
  $("#next").disabled = state.next === null;
}

function refetchSoon() {
  clearTimeout(state.refetch);
  state.refetch = setTimeout(() => loadInvoices(), 800);
}

function applyChanges(rows) {
  for (const row of rows) {
    const tr = document.querySelector(`#invoices tr[data-invoice="${CSS.escape(row.invoice_id)}"]` +
                                      `[data-version="${row.invoice_version}"]`);
    if (tr) {
      tr.querySelector(".status-cell").replaceChildren(statusBadge(row.status));
      tr.classList.remove("changed");
      void tr.offsetWidth;
      tr.classList.add("changed");
    }
    // The open version is shown again, not a newer one: the clerk reads what a release would act on.
    if (state.open && state.open.invoice_id === row.invoice_id && state.open.invoice_version === row.invoice_version) {
      openInvoice(row.invoice_id, row.invoice_version, true);
    }
  }
  if (rows.length) refetchSoon();  // filters and paging may now include or leave out other rows
}

// -- the drill-down --------------------------------------------------------------------------
function cells(values, mismatch = -1) {
  return values.map((value, i) => el("td", i === mismatch ? { class: "mismatch" } : {}, value ?? "–"));
}

// `refresh`: read again for the live feed, shown only if the clerk still has it open by then.
// A click is shown only if no other row was clicked since (`state.clicked` counts the clicks):
// clicked on MP-3, then MP-2, the panel, the row marked and the Release and Send-to-RPA buttons
// went back to MP-3 when its answer came last.
async function openInvoice(invoiceId, version, refresh = false) {
  const click = refresh ? null : ++state.clicked;
  const overtaken = () => click !== null && click !== state.clicked;
  let invoice;
  try {
    invoice = await api(`/api/invoices/${encodeURIComponent(invoiceId)}?version=${version}`);
  } catch (error) {
    if (!overtaken()) $("#action-message").textContent = visible(error.message);
    return;
  }
  if (overtaken()) return;
  const open = state.open;
  if (refresh && !(open && open.invoice_id === invoiceId && open.invoice_version === version)) return;
  state.open = invoice;
  $("#detail").hidden = false;
  $("#detail-title").textContent = `${isolated(invoice.invoice_id)} v${invoice.invoice_version}`;
  $("#detail-status").replaceWith(Object.assign(statusBadge(invoice.status), { id: "detail-status" }));
  $("#detail-meta").textContent = `PO ${isolated(invoice.po_number)} · vendor ${isolated(invoice.vendor_id)} · ` +
    `invoice ${isolated(invoice.invoice_number)} · rules ${invoice.rules_version ?? "–"}` +
    (invoice.sampro_invoice_id ? ` · Sampro ${isolated(invoice.sampro_invoice_id)}` : "");
  const clerk = state.me && state.me.role === "clerk";
  const newest = invoice.invoice_version === Math.max(...invoice.versions);
  $("#detail-holds tbody").replaceChildren(...(invoice.holds.length ? invoice.holds.map((h) => el("tr",
    { "data-hold": h.id }, ...cells([h.code, h.line_no, h.field, h.message,
      h.released_by ? `released by ${h.released_by}` + (h.release_reason ? ` (${h.release_reason})` : "")
        : h.releasable ? "open" : `open: ${h.cleared_by}`]),
    el("td", {}, clerk && newest && h.releasable && !h.released_by
      ? el("button", { type: "button", class: "release-hold", "data-hold": h.id }, "Release…") : ""))) :
    [el("tr", {}, el("td", { colspan: 6 }, "No holds."))]));
  $("#detail-reasons tbody").replaceChildren(...(invoice.reasons.length ? invoice.reasons.map((r) =>
    el("tr", {}, ...cells([r.code, r.severity, r.line_no, r.field, r.expected, r.actual, r.message]))) :
    [el("tr", {}, el("td", { colspan: 7 }, "No findings: every rule passed."))]));
  $("#detail-header tbody").replaceChildren(...invoice.comparison.header.map((f) =>
    el("tr", { "data-field": f.field }, ...cells([f.field, f.invoice, f.purchase_order], f.findings.length ? 1 : -1))));
  $("#detail-lines tbody").replaceChildren(...invoice.comparison.lines.flatMap((line) => line.fields.map((f) =>
    el("tr", { "data-line": line.line_no, "data-field": f.field },
       ...cells([line.line_no, line.po_line_nos.join(", ") || null, f.field, f.invoice, f.purchase_order],
                f.findings.length ? 3 : -1)))));
  const po = invoice.po_snapshot;
  $("#detail-po-lines tbody").replaceChildren(...(po ? po.lines.map((l) => el("tr", {}, ...cells(
    [l.line_no, l.part_number, l.unit_price, l.quantity_ordered, l.quantity_received, l.quantity_invoiced]))) :
    [el("tr", {}, el("td", { colspan: 6 }, "Sampro had no such PO."))]));
  $("#detail-history").replaceChildren(...invoice.history.map((h) => el("li", { "data-status": h.status },
    utc(h.occurred_at), " ", statusBadge(h.status),
    h.actor ? ` by ${h.actor}` : "", h.reason ? ` — ${h.reason}` : "")));
  $("#detail-payload").textContent = invoice.rpa_payload ? visible(JSON.stringify(invoice.rpa_payload, null, 2)) : "none";
  $("#release-button").hidden = !(clerk && newest && releasable(invoice).length);
  $("#dispatch-button").hidden = !(clerk && invoice.status === "ready_to_process");
  for (const tr of document.querySelectorAll("#invoices tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.invoice === invoice.invoice_id);
  }
}

async function command(path, body, done) {
  try {
    const answer = await api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                     body: JSON.stringify(body) });
    $("#action-message").textContent = visible(`${done} ${answer.detail}`);
    return true;
  } catch (error) {
    $("#action-message").textContent = visible(`Not done: ${error.message}`);
    return false;
  }
}

// What "Release all" names, never nothing: a release naming none releases every hold the invoice has
// when the worker takes it. A dialog opened on a failed hand-off sent none, and once another clerk's
// release of the failure was judged again at its turn and held (the buyer had cancelled the PO), its
// confirm released PO_NOT_OPEN, which no one had seen, and the bot got an invoice of a cancelled PO.
// A failure is named as the API names it; an invoice with no hold a clerk may release has no button.
function releasable(invoice) {
  return invoice.status === "rpa_failed" ? [RPA_FAILURE]
    : invoice.holds.filter((h) => h.releasable && !h.released_by).map((h) => h.id);
}

function setUpActions() {
  const dialog = $("#release-dialog");
  const openRelease = (holds) => {  // the holds to release, named
    // Each as the clerk sees it, the failure by the bot's error: a dialog opened on one failure released
    // the next, failed with an error the clerk never read, once another clerk had released the first.
    const messages = Object.fromEntries(state.open.holds.map((h) => [h.id, h.message]));
    if (state.open.failure) messages[RPA_FAILURE] = state.open.failure;
    // The release goes for the version the dialog names, whatever the live feed shows by the time
    // the clerk confirms: a vendor's new version of the invoice is not what the clerk read.
    state.releasing = { invoice_id: state.open.invoice_id, invoice_version: state.open.invoice_version, holds,
                        messages };
    $("#release-what").textContent = holds[0] === RPA_FAILURE ? "the failed hand-off"
      : holds.length > 10 ? `the ${holds.length} holds shown`
      : `${holds.length > 1 ? "holds" : "hold"} ${holds.join(", ")}`;
    $("#release-invoice").textContent = `${isolated(state.open.invoice_id)} v${state.open.invoice_version}`;
    $("#release-code").replaceChildren(...state.open.release_reason_codes.map((code) => el("option", { value: code }, code)));
    $("#release-reason").value = "";
    dialog.showModal();
  };
  // The holds the clerk sees, named: none named, the worker releases every hold the invoice has when
  // it gets the command, and one a Sampro change added meanwhile was released unread. Past the 200 a
  // release may name (one per line of a 1,000-line invoice), in several releases.
  $("#release-button").addEventListener("click", () => openRelease(releasable(state.open)));
  $("#detail-holds").addEventListener("click", (event) => {
    const button = event.target.closest("button.release-hold");
    if (button) openRelease([button.dataset.hold]);
  });
  $("#release-cancel").addEventListener("click", () => dialog.close());
  $("#release-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = $("#release-reason").value.trim();
    if (!reason) return;
    dialog.close();
    const { invoice_id: invoiceId, invoice_version: version, holds, messages } = state.releasing;
    const code = $("#release-code").value;
    for (let from = 0; from < holds.length; from += MAX_HOLDS_NAMED) {
      const batch = holds.slice(from, from + MAX_HOLDS_NAMED);
      // Each hold as the clerk saw it: one judged again since, reading otherwise, is refused, not released.
      const seen = Object.fromEntries(batch.filter((id) => id in messages).map((id) => [id, messages[id]]));
      if (!await command(`/api/invoices/${encodeURIComponent(invoiceId)}/release`,
                         { invoice_version: version, reason, holds: batch, reason_code: code, seen },
                         "Release sent:")) {
        if (from > 0) {  // the batches before went: say so, or the clerk takes none for released
          $("#action-message").textContent = `Releases of ${from} of the ${holds.length} holds sent; ` +
            `the rest not: ${$("#action-message").textContent}`;
        }
        break;
      }
    }
  });
  $("#dispatch-button").addEventListener("click", async () => {
    const invoice = state.open;
    if (!confirm(`Send ${isolated(invoice.invoice_id)} v${invoice.invoice_version} to the RPA bot?`)) return;
    await command(`/api/invoices/${encodeURIComponent(invoice.invoice_id)}/send-to-rpa`,
                  { invoice_version: invoice.invoice_version }, "Sent:");
  });
  // Closing overtakes a click whose answer has not come: it opened the panel again after the close.
  $("#detail-close").addEventListener("click", () => {
    $("#detail").hidden = true;
    state.open = null;
    state.clicked++;
  });
}

function setUpFilters(reasonCodes, statuses) {
  const form = $("#filters");
  form.status.append(...statuses.map((s) => el("option", { value: s }, s)));
  form.reason_code.append(...reasonCodes.map((c) => el("option", { value: c }, c)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.query = Object.fromEntries([...new FormData(form)].filter(([, v]) => v));
    loadInvoices([null], [0]);
  });
  form.addEventListener("reset", () => setTimeout(() => form.requestSubmit(), 0));
  $("#prev").addEventListener("click", () => {
    if (state.pages.length > 1) loadInvoices(state.pages.slice(0, -1), state.shown.slice(0, -1));
  });
  $("#next").addEventListener("click", () => {
    if (state.next === null) return;
    loadInvoices([...state.pages, state.next], [...state.shown, state.shown[state.shown.length - 1] + state.listed]);
  });
}

function showLive(on, text) {
  $("#live").className = on ? "live on" : "live off";
  $("#live").textContent = text;
}

// The browser opens the stream again by itself after a network error, but not after an answer
// other than 200 (a 401 at the session's end, a 429 past the streams a user may keep, a proxy's
// 502 while the API restarts): then the page asks again every RECONNECT_MS. What changed while
// the stream was down never comes on it: the list and the open invoice are read again.
const RECONNECT_MS = 10000;
const MAX_HOLDS_NAMED = 200;  // rules.lifecycle.MAX_HOLDS_NAMED: what one release may name
const RPA_FAILURE = "RPA_FAILED::";  // rules.holds.RPA_FAILURE: what a release of a failed hand-off names

function listen() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    showLive(true, "live");
    if (state.missed) {
      state.missed = false;
      loadInvoices();
      if (state.open) openInvoice(state.open.invoice_id, state.open.invoice_version, true);
    }
  });
  source.addEventListener("error", () => {
    showLive(false, "reconnecting…");
    state.missed = true;
    if (source.readyState === EventSource.CLOSED) {
      api("/api/me").catch(() => {});  // signed out: to the sign-in page
      setTimeout(listen, RECONNECT_MS);
    }
  });
  source.addEventListener("update", (event) => {
    const update = JSON.parse(event.data);
    if (update.resync) {  // the page stopped reading, and updates were dropped: their rows too
      loadInvoices();
      if (state.open) openInvoice(state.open.invoice_id, state.open.invoice_version, true);
    }
    if (update.error) {
      showLive(false, update.error);
      return;
    }
    showLive(true, "live");  // processscheduler is read again
    showKpi(update.kpi);
    applyChanges(update.changed);
  });
}

async function start() {
  state.me = await api("/api/me");
  $("#who").textContent = `${state.me.name} (${state.me.role})`;
  const [schema, kpi] = await Promise.all([fetch("/openapi.json").then((r) => r.json()), api("/api/kpi")]);
  setUpFilters(schema.components.schemas.ReasonCode.enum, Object.keys(kpi.by_status));
  setUpActions();
  showKpi(kpi);
  await loadInvoices();
  listen();
  setInterval(() => state.kpi && setTile("oldest_waiting", age(state.kpi.oldest_waiting_since)), 5000);
  document.body.dataset.ready = "true";
}

start();
