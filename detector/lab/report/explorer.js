// The analyst report's episode explorer: filter, expand a cluster, select, export. No network, no
// libraries: the episodes are embedded in the page as JSON (id "episodes-data").
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("episodes-data").textContent);
  var byId = {};
  data.forEach(function (e) { byId[e.id] = e; });
  var selected = {};
  var expanded = {};
  var AXES = ["coordination", "extraction", "trust", "network", "other"];
  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function num(v) {
    if (typeof v !== "number") { return esc(v); }
    if (Number.isInteger(v)) { return v.toLocaleString("en-US"); }
    return Math.abs(v) < 1 ? v.toFixed(3) : v.toFixed(1);
  }
  function when(ts) { return esc(String(ts || "").replace("T", " ").slice(0, 16)); }

  function filters() {
    var sev = {};
    document.querySelectorAll("input.f-sev").forEach(function (b) { sev[b.value] = b.checked; });
    return { sev: sev, campaign: $("f-campaign").value, kind: $("f-kind").value,
             from: $("f-from").value, to: $("f-to").value };
  }
  function passes(e, f) {
    var t = String(e.detected).slice(0, 16);
    return f.sev[e.severity] && (f.campaign === "*" || e.campaign === f.campaign) &&
      (f.kind === "*" || e.kind === f.kind) && (!f.from || t >= f.from) && (!f.to || t <= f.to);
  }
  function shown() {
    var f = filters();
    var pass = data.filter(function (e) { return passes(e, f); });
    var passing = {};
    pass.forEach(function (e) { passing[e.id] = true; });
    // account alerts sit under their cluster when that cluster is shown
    var top = f.kind === "*" ? pass.filter(function (e) {
      return e.kind === "cluster" || !e.parents.some(function (p) { return passing[p]; });
    }) : pass;
    return { all: pass, top: top };
  }

  function why(e) {
    if (e.output) { return e.output; }
    var r = e.reasons[0] || {};
    return r.title || r.name || "";
  }
  function row(e) {
    var kids = e.children.length ? " · " + e.children.length + " account alert" + (e.children.length > 1 ? "s" : "") : "";
    return '<tr class="ep" data-id="' + esc(e.id) + '">' +
      '<td><input type="checkbox" class="pick" data-id="' + esc(e.id) + '"' + (selected[e.id] ? " checked" : "") + "></td>" +
      '<td><button class="expand" data-id="' + esc(e.id) + '" aria-expanded="' + (expanded[e.id] ? "true" : "false") + '">' +
      (expanded[e.id] ? "▾" : "▸") + "</button></td>" +
      '<td class="sev sev-' + esc(e.severity) + '">' + esc(e.severity) + "</td><td>" + esc(e.kind) + "</td>" +
      "<td>" + esc(e.subject) + '<span class="note">' + esc(kids) + "</span></td><td>" + esc(e.campaign || "-") + "</td>" +
      '<td class="n">' + e.accounts.length + '</td><td class="n">' + num(e.score) + "</td>" +
      "<td>" + when(e.first) + "</td><td>" + when(e.detected) + '</td><td class="n">' + e.timeline.length + "</td>" +
      '<td class="why">' + esc(why(e)) + "</td></tr>";
  }
  function table(head, rows, cls) {
    return '<table class="' + (cls || "") + '"><thead><tr>' + head.map(function (h) { return "<th>" + esc(h) + "</th>"; }).join("") +
      "</tr></thead><tbody>" + rows.map(function (r) { return "<tr>" + r.map(function (c) { return "<td>" + c + "</td>"; }).join("") + "</tr>"; }).join("") +
      "</tbody></table>";
  }
  function detail(e) {
    var parts = [];
    parts.push('<section class="d-why"><h4>Why</h4><p class="sentence">' + esc(e.output || "(no rule sentence: model score only)") + "</p><ul>" +
      e.reasons.map(function (r) {
        return "<li><b>" + esc(r.title || r.name) + '</b> <span class="sev-' + esc(r.severity) + '">' + esc(r.severity || "") + "</span> " +
          '<span class="note">' + esc(r.source) + " " + esc(r.name) + (r.score === null ? "" : ", score " + num(r.score)) + "</span>" +
          (r.output ? "<br>" + esc(r.output) : "") + (r.detail ? '<div class="note">' + esc(r.detail) + "</div>" : "") + "</li>";
      }).join("") + "</ul></section>");
    var models = e.reasons.filter(function (r) { return r.source === "model"; });
    parts.push('<section class="d-score"><h4>Score ' + num(e.score) + "</h4>" + (models.length ? models.map(function (r) {
      return "<p><b>" + esc(r.name) + "</b> " + num(r.score) + '<br><span class="note">' + esc(r.detail || "") + "</span></p>";
    }).join("") : '<p class="note">No model scored this episode.</p>') + "</section>");
    parts.push('<section class="d-axes"><h4>Evidence by axis</h4>' + AXES.filter(function (a) { return e.axes[a]; }).map(function (a) {
      return "<h5>" + esc(a) + "</h5>" + table(["feature", "value"], e.axes[a].map(function (fv) { return [esc(fv[0]), num(fv[1])]; }), "axis axis-" + a);
    }).join("") + "</section>");
    if (e.kind === "cluster") {
      var most = Math.max.apply(null, e.shared.map(function (k) { return k[2] || 0; }).concat([1]));
      parts.push('<section class="d-keys"><h4>Shared keys linking the members (' + e.shared.length + ")</h4>" +
        table(["family", "key", "members sharing"], e.shared.map(function (k) {
          return ['<span class="fam fam-' + esc(k[0]) + '">' + esc(k[0]) + "</span>", '<code class="key">' + esc(k[1]) + "</code>",
            '<span class="bar" style="width:' + Math.round(80 * (k[2] || 0) / most) + 'px"></span> ' + esc(k[2] === null ? "?" : k[2])];
        }), "keys-table") + (e.links.length ? '<p class="note">' + e.links.map(esc).join("<br>") + "</p>" : "") + "</section>");
      var own = {};
      e.children.forEach(function (cid) { var c = byId[cid]; own[c.subject] = c; });
      var members = e.accounts.slice().sort(function (a, b) { return (own[b] ? 1 : 0) - (own[a] ? 1 : 0) || (a < b ? -1 : 1); });
      parts.push('<section class="d-members"><h4>Members (' + e.accounts.length + ')</h4><ul class="member-list">' + members.map(function (a) {
        return '<li data-account="' + esc(a) + '">' + esc(a) + (own[a] ? ' <span class="sev-' + esc(own[a].severity) + '">own alert: ' + esc(own[a].severity) + "</span>" : "") + "</li>";
      }).join("") + "</ul></section>");
      parts.push('<section class="d-children"><h4>Account alerts in this cluster (' + e.children.length + ")</h4>" +
        (e.children.length ? table(["severity", "account", "campaign", "detected", "why"], e.children.map(function (cid) {
          var c = byId[cid];
          return ['<span class="sev-' + esc(c.severity) + '">' + esc(c.severity) + "</span>", esc(c.subject), esc(c.campaign || "-"), when(c.detected), esc(why(c))];
        }), "children-table") : '<p class="note">None of its members has an account alert.</p>') + "</section>");
    }
    parts.push('<section class="d-timeline"><h4>Timeline (' + e.timeline.length + " revision" + (e.timeline.length > 1 ? "s" : "") + ")</h4>" +
      '<p class="note">Evidence since ' + when(e.first) + ", first raised " + when(e.detected) + "</p>" +
      table(["revision", "event time", "severity", "accounts"], e.timeline.map(function (t) {
        return [esc(t[0]), when(t[1]), '<span class="sev-' + esc(t[2]) + '">' + esc(t[2]) + "</span>", esc(t[3])];
      }), "timeline-table") + "</section>");
    return '<tr class="detail" data-for="' + esc(e.id) + '"><td colspan="12"><div class="detail-grid">' + parts.join("") + "</div></td></tr>";
  }

  function render() {
    var s = shown();
    var html = s.top.map(function (e) { return row(e) + (expanded[e.id] ? detail(e) : ""); });
    $("episodes").tBodies[0].innerHTML = html.join("");
    var accounts = {};
    s.all.forEach(function (e) { e.accounts.forEach(function (a) { accounts[a] = true; }); });
    var picked = Object.keys(selected).length;
    $("shown-count").textContent = s.all.length + " of " + data.length + " episodes match (" + s.top.length +
      " rows, account alerts nested under their cluster), " + Object.keys(accounts).length + " accounts; " +
      picked + " selected";
    document.documentElement.dataset.reportReady = String(s.top.length);
  }

  function exportRows() {
    var ids = Object.keys(selected).filter(function (id) { return byId[id]; });
    var eps = ids.length ? ids.map(function (id) { return byId[id]; }) : shown().all;
    var out = [];
    eps.forEach(function (e) {
      e.accounts.forEach(function (a) {
        out.push({ account_id: a, alert_id: e.id, kind: e.kind, subject: e.subject, severity: e.severity,
                   campaign_type: e.campaign || null, score: e.score, first_event_ts: e.first, detected_event_ts: e.detected });
      });
    });
    return { rows: out, episodes: eps.length };
  }
  function csvCell(v) {
    var s = v === null || v === undefined ? "" : String(v);
    return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function download(name, mime, text, n) {
    var blob = new Blob([text], { type: mime });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    $("export-status").textContent = "exported " + n.rows + " account rows from " + n.episodes + " episodes to " + name;
  }
  var COLUMNS = ["account_id", "alert_id", "kind", "subject", "severity", "campaign_type", "score", "first_event_ts", "detected_event_ts"];
  $("export-csv").addEventListener("click", function () {
    var x = exportRows();
    var lines = [COLUMNS.join(",")].concat(x.rows.map(function (r) { return COLUMNS.map(function (c) { return csvCell(r[c]); }).join(","); }));
    download("accounts.csv", "text/csv", lines.join("\n") + "\n", x);
  });
  $("export-json").addEventListener("click", function () {
    var x = exportRows();
    download("accounts.json", "application/json", JSON.stringify(x.rows, null, 1), x);
  });
  $("episodes").addEventListener("click", function (ev) {
    var t = ev.target;
    if (t.classList.contains("expand")) {
      expanded[t.dataset.id] = !expanded[t.dataset.id];
      render();
    } else if (t.classList.contains("pick")) {
      if (t.checked) { selected[t.dataset.id] = true; } else { delete selected[t.dataset.id]; }
      render();
    }
  });
  $("pick-shown").addEventListener("change", function (ev) {
    var on = ev.target.checked;
    shown().top.forEach(function (e) { if (on) { selected[e.id] = true; } else { delete selected[e.id]; } });
    render();
  });
  $("clear-picks").addEventListener("click", function () { selected = {}; $("pick-shown").checked = false; render(); });
  document.querySelectorAll(".filters input, .filters select").forEach(function (el) {
    if (el.id !== "pick-shown") { el.addEventListener("change", render); el.addEventListener("input", render); }
  });
  render();
})();
