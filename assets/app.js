// newswatch review page: make the status buttons act without a reload. The page works the
// same without this script (the forms post and redirect back). No inline script anywhere: the
// Content-Security-Policy allows only this file.
"use strict";
document.addEventListener("submit", async (ev) => {
  const form = ev.target;
  if (!(form instanceof HTMLFormElement) || !form.classList.contains("act")) return;
  ev.preventDefault();
  const body = new URLSearchParams(new FormData(form));
  let out;
  try {
    const resp = await fetch(form.action, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    out = await resp.json();
    if (!resp.ok) throw new Error(out.error || resp.statusText);
  } catch (e) {
    form.dataset.error = String(e.message || e);
    form.classList.add("failed");
    return;
  }
  const done = new Set(out.ids.map(String));
  for (const item of document.querySelectorAll("[data-item]")) {
    if (!done.has(item.dataset.item)) continue;
    const s = item.querySelector(".status");
    if (s) s.textContent = out.status;
  }
  for (const story of document.querySelectorAll("article.story")) {
    const ids = story.dataset.ids.split(",");
    if (ids.every((id) => done.has(id))) {
      story.className = "story status-" + out.status;
    }
  }
});
