// payrail console: the little JavaScript the server-rendered pages use. No inline script
// anywhere (the Content-Security-Policy forbids it); everything hangs off data attributes.
"use strict";

(function () {
  // Dates: the server writes UTC into <time datetime>; show them in the viewer's zone.
  var fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.textContent = fmt.format(d);
        el.title = el.getAttribute("datetime");
      }
    });
  }

  // A form marked data-once submits once: a double click cannot post it twice (and the
  // idempotency key in the form makes a retried post the same payment anyway).
  function submitOnce(form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.submitted === "1") { event.preventDefault(); return; }
      form.dataset.submitted = "1";
      setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  }

  // The payment form shows only the sections the chosen kind needs.
  function paymentForm(form) {
    function sync() {
      var kind = (form.querySelector("input[name=kind]:checked") || {}).value || "";
      var wallet = (form.querySelector("input[name=funding_source]:checked") || {}).value === "wallet";
      form.querySelectorAll("[data-show-for]").forEach(function (el) {
        el.hidden = el.dataset.showFor !== kind;
      });
      var card = form.querySelector("[data-section=card]");
      if (card) { card.hidden = kind === "purchase" && wallet; }
    }
    form.addEventListener("change", sync);
    sync();
  }

  // A payment's timeline follows WatchPayment through server-sent events.
  function liveTimeline(list) {
    var url = list.dataset.watch;
    var state = document.getElementById("live-state");
    var current = document.getElementById("current-status");
    var seen = {};
    list.querySelectorAll("li[data-version]").forEach(function (li) { seen[li.dataset.version] = true; });
    var source = new EventSource(url);
    source.addEventListener("payment", function (event) {
      var p = JSON.parse(event.data);
      if (!seen[p.version]) {
        seen[p.version] = true;
        var li = document.createElement("li");
        li.dataset.status = p.status;
        li.dataset.version = p.version;
        var badge = document.createElement("span");
        badge.className = "status status-" + p.status;
        badge.dataset.status = p.status;
        badge.textContent = p.status_label;
        var when = document.createElement("time");
        when.setAttribute("datetime", p.time);
        when.textContent = p.time;
        li.appendChild(badge);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(when);
        list.appendChild(li);
        localTimes(li);
      }
      if (current) {
        current.innerHTML = "";
        var b = document.createElement("span");
        b.className = "status status-" + p.status;
        b.dataset.status = p.status;
        b.textContent = p.status_label;
        current.appendChild(b);
      }
      var reason = document.getElementById("reason");
      if (reason && (p.failure_message || p.verification_reason)) {
        reason.textContent = p.failure_message || p.verification_reason;
      }
      var verify = document.getElementById("verify");
      if (verify) {
        verify.hidden = !(p.status === "requires_verification" && !p.verified);
        var vr = document.getElementById("verify-reason");
        if (vr) { vr.textContent = p.verification_reason; }
      }
      if (p.final) {
        state.textContent = "This payment is final.";
        source.close();
      }
    });
    source.addEventListener("end", function () { source.close(); });
    source.addEventListener("failure", function (event) {
      state.textContent = JSON.parse(event.data).message + " Reload to try again.";
      source.close();
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        state.textContent = "Live updates stopped; reload to see the latest.";
      }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("form[data-once]").forEach(submitOnce);
    document.querySelectorAll("form.payment-form").forEach(paymentForm);
    document.querySelectorAll("[data-watch]").forEach(liveTimeline);
  });
})();
