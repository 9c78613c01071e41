// The limits page: no framework, no build step. Data is written with textContent only.
"use strict";

// Every 15 s by default; `?refresh=SECONDS` in the page's address changes it.
const REFRESH_MS = Math.max(1, Number(new URLSearchParams(location.search).get("refresh")) || 15) * 1000;
const PERIODS = {
  CALENDAR_DAY: "calendar day", CALENDAR_WEEK: "calendar week", CALENDAR_MONTH: "calendar month",
  DAY: "24 hours", WEEK: "7 days", MONTH: "month", INDEFINITE: "no period", INSTANCE: "per instance",
};

const form = document.getElementById("lookup");
const userInput = document.getElementById("user-id");
const tokenInput = document.getElementById("token");
const tokenField = document.getElementById("token-field");
const message = document.getElementById("message");
const asOfLine = document.getElementById("as-of");
const cards = document.getElementById("cards");
const template = document.getElementById("card-template");

let current = null; // {userId, token} of the last lookup
let refreshTimer = null;

function title(word) {
  return word.charAt(0) + word.slice(1).toLowerCase().replaceAll("_", " ");
}

// The API's decimals are strings: -?digits[.digits][(e|E)[+|-]digits]. They are written out in
// plain digits from the string itself, never through a JS Number (which rounds past 15-17
// digits): 5E-8 is 0.00000005, 1E+30 has all its 31 digits. Digits after the point are kept as
// written (95.50 stays 95.50); a zero has no sign.
const DECIMAL = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?$/;
const MAX_DIGITS = 1000; // a longer expansion is shown in exponent form, as the API sent it

function plainDecimal(text) {
  const match = DECIMAL.exec(text);
  if (!match) return text;
  const [, sign, whole, fraction = "", exponent = "0"] = match;
  const digits = whole + fraction;
  const shift = exponent.length > 7 ? Infinity : Number(exponent);
  const point = whole.length + shift; // where the decimal point falls in `digits`
  if (Math.max(point, digits.length - point) > MAX_DIGITS) return text;
  let integer = digits;
  let decimals = "";
  if (point <= 0) {
    integer = "0";
    decimals = "0".repeat(-point) + digits;
  } else if (point < digits.length) {
    integer = digits.slice(0, point);
    decimals = digits.slice(point);
  } else {
    integer = digits + "0".repeat(point - digits.length);
  }
  integer = integer.replace(/^0+(?=[0-9])/, "");
  const grouped = integer.replace(/\B(?=([0-9]{3})+(?![0-9]))/g, ",");
  const zero = !/[1-9]/.test(digits);
  return `${sign && !zero ? "-" : ""}${grouped}${decimals ? "." + decimals : ""}`;
}

function amount(decimal, currency) {
  return `${plainDecimal(decimal)} ${currency}`;
}

function level(percent) {
  if (percent >= 90) return "bad";
  if (percent >= 75) return "warn";
  return "ok";
}

function countdown(resetMs, now) {
  if (resetMs === null) return "No reset";
  let seconds = Math.floor((resetMs - now) / 1000);
  if (seconds <= 0) return "Resetting now";
  const days = Math.floor(seconds / 86400);
  seconds %= 86400;
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor((seconds % 3600) / 60))}:${pad(seconds % 60)}`;
  return `in ${days > 0 ? days + "d " : ""}${clock}`;
}

function tick() {
  const now = Date.now();
  for (const element of cards.querySelectorAll(".countdown")) {
    const reset = element.dataset.reset;
    element.textContent = countdown(reset ? Number(reset) : null, now);
  }
}

function render(limits) {
  const fragment = document.createDocumentFragment();
  for (const limit of limits) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.userLimitId = limit.userLimitId;
    card.querySelector(".card-title").textContent = `${title(limit.type)} · ${PERIODS[limit.period] || title(limit.period)}`;
    const badge = card.querySelector(".badge");
    badge.textContent = title(limit.status);
    badge.classList.add(limit.status);
    // A Number only for the bar's length and colour, never for a figure shown.
    const percent = Number(limit.usedPercent);
    const filled = Math.min(Math.max(percent, 0), 100);
    const used = plainDecimal(limit.usedPercent);
    const bar = card.querySelector(".bar");
    bar.classList.add(level(percent));
    bar.setAttribute("aria-valuenow", String(filled));
    bar.setAttribute("aria-valuetext", `${used}% used`);
    bar.setAttribute("aria-label", `${title(limit.type)} limit used`);
    card.querySelector(".bar-fill").style.width = `${filled}%`;
    card.querySelector(".used").textContent =
      `${amount(limit.progress, limit.currencyCode)} of ${amount(limit.value, limit.currencyCode)} used (${used}%)`;
    card.querySelector(".remaining").textContent = amount(limit.remaining, limit.currencyCode);
    const clock = card.querySelector(".countdown");
    if (limit.nextResetTime !== null) clock.dataset.reset = String(limit.nextResetTime);
    fragment.append(card);
  }
  cards.replaceChildren(fragment);
  tick();
}

function showError(text) {
  message.textContent = text;
  message.classList.add("error");
}

async function fetchAll(userId, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const limits = [];
  let cursor = null;
  let asOf = null;
  do {
    const params = new URLSearchParams({ sort: "type", limit: "100" });
    if (cursor) params.set("cursor", cursor);
    const response = await fetch(`/api/user-limits/${encodeURIComponent(userId)}?${params}`, { headers });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const reason = body && body.error ? body.error.message : response.statusText;
      throw new Error(`${response.status}: ${reason}`);
    }
    limits.push(...body.userLimits);
    asOf = body.asOf;
    cursor = body.nextCursor;
  } while (cursor);
  return { limits, asOf };
}

async function load() {
  if (!current) return;
  try {
    const { limits, asOf } = await fetchAll(current.userId, current.token);
    render(limits);
    message.classList.remove("error");
    message.textContent = limits.length
      ? `${limits.length} limit${limits.length === 1 ? "" : "s"} for ${current.userId}`
      : `No limits for ${current.userId}`;
    asOfLine.hidden = false;
    asOfLine.textContent = asOf === null ? "No events processed yet" : `Figures as of ${new Date(asOf).toLocaleString()}`;
  } catch (error) {
    showError(`Could not load the limits (${error.message})`);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  current = { userId: userInput.value.trim(), token: tokenInput.value.trim() };
  cards.replaceChildren();
  asOfLine.hidden = true;
  message.classList.remove("error");
  message.textContent = "Loading…";
  clearInterval(refreshTimer);
  refreshTimer = setInterval(load, REFRESH_MS);
  load();
});

setInterval(tick, 1000);

fetch("/config")
  .then((response) => response.json())
  .then((config) => {
    if (!config.auth) tokenField.hidden = true;
  })
  .catch(() => {});
