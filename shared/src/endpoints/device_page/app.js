// The sandbox device page. It calls the device API (README, "The device API") with the
// device token the user typed, kept in this tab's sessionStorage only, never in a URL.
// Whatever the API returns goes into the page as text (textContent), never as markup:
// binding messages and client names come from clients.
'use strict';

(() => {
  const TOKEN_KEY = 'ciba-device-token';
  const HOLDER_KEY = 'ciba-device-holder';
  const POLL_MS = 2000;
  const LOA2 = 'urn:brasil:openbanking:loa2';
  const LOA3 = 'urn:brasil:openbanking:loa3';
  // The API lives beside the page: /device/ serves the page, /device/requests the list.
  const BASE = location.pathname.replace(/[^/]*$/, '');

  const $ = (id) => document.getElementById(id);
  const cards = new Map();
  // Decided here: a list fetched just before the decision must not bring the card back.
  const decided = new Set();
  let poller = null;
  let polling = false;

  // --- The device API -------------------------------------------------------------------

  async function api(method, path, body) {
    const headers = { authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY) };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(BASE + path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (response.status === 401) {
      signOut('The device API token was refused.');
    }
    return { ok: response.ok, status: response.status, data };
  }

  function describe(result) {
    const d = result.data || {};
    return (d.error_description || d.error || 'HTTP ' + result.status);
  }

  function say(text, failed) {
    const message = $('message');
    message.textContent = text;
    message.classList.toggle('failed', Boolean(failed));
    message.hidden = false;
  }

  // --- Signing in and out ---------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const token = $('token').value.trim();
    $('token').value = '';
    $('sign-in-error').textContent = '';
    sessionStorage.setItem(TOKEN_KEY, token);
    await start();
  }

  function signOut(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling();
    clearCards();
    $('device').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in').hidden = false;
    $('sign-in-error').textContent = why || '';
    $('message').hidden = true;
  }

  async function start() {
    if (!sessionStorage.getItem(TOKEN_KEY)) {
      return;
    }
    let result;
    try {
      result = await api('GET', 'holders');
    } catch (_) {
      $('sign-in-error').textContent = 'The server cannot be reached.';
      return;
    }
    if (!result.ok) {
      if (result.status !== 401) {
        signOut('The holders could not be read: ' + describe(result));
      }
      return;
    }
    const select = $('holder');
    select.replaceChildren();
    for (const holder of result.data.holders) {
      const option = document.createElement('option');
      option.value = holder.sub;
      option.textContent = holder.name ? holder.name + ' (' + holder.sub + ')' : holder.sub;
      select.append(option);
    }
    const remembered = sessionStorage.getItem(HOLDER_KEY);
    if (remembered && result.data.holders.some((h) => h.sub === remembered)) {
      select.value = remembered;
    }
    $('sign-in').hidden = true;
    $('device').hidden = false;
    $('sign-out').hidden = false;
    holderChanged();
  }

  function holder() {
    return $('holder').value;
  }

  function holderChanged() {
    sessionStorage.setItem(HOLDER_KEY, holder());
    clearCards();
    $('hint').hidden = true;
    startPolling();
  }

  // --- The holder's pending requests, polled ---------------------------------------------

  function startPolling() {
    stopPolling();
    refresh();
    poller = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (poller !== null) {
      clearInterval(poller);
      poller = null;
    }
  }

  async function refresh() {
    const sub = holder();
    if (polling || !sub) {
      return;
    }
    polling = true;
    try {
      const result = await api('GET', 'requests?subject=' + encodeURIComponent(sub));
      if (sub !== holder() || $('device').hidden) {
        return;
      }
      $('live').classList.toggle('stale', !result.ok);
      $('live').textContent = result.ok ? 'live' : 'not updating';
      if (result.ok) {
        show(result.data.requests);
      }
    } catch (_) {
      $('live').classList.add('stale');
      $('live').textContent = 'offline';
    } finally {
      polling = false;
    }
  }

  function clearCards() {
    cards.clear();
    $('requests').replaceChildren();
    $('empty').hidden = false;
  }

  function show(requests) {
    const seen = new Set();
    for (const request of requests) {
      if (decided.has(request.id)) {
        continue;
      }
      seen.add(request.id);
      let card = cards.get(request.id);
      if (!card) {
        card = makeCard(request);
        cards.set(request.id, card);
        $('requests').append(card);
      }
      timeLeft(card, request.expires_in);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    $('empty').hidden = cards.size > 0;
  }

  function text(card, selector, value) {
    card.querySelector(selector).textContent = value;
  }

  function makeCard(request) {
    const card = $('request-template').content.firstElementChild.cloneNode(true);
    card.dataset.id = request.id;
    text(card, '.client', request.client_name || request.client_id);
    const binding = card.querySelector('.binding-message');
    if (request.binding_message) {
      binding.textContent = request.binding_message;
    } else {
      binding.textContent = 'No binding message';
      binding.classList.add('none');
    }
    const permissions = card.querySelector('.permissions');
    const consent = request.consent || {};
    for (const permission of consent.permissions || []) {
      const item = document.createElement('li');
      item.textContent = permission;
      permissions.append(item);
    }
    if (!permissions.childElementCount) {
      permissions.textContent = '(none)';
    }
    const acrs = (request.acr_values || []).map((a) => a.replace('urn:brasil:openbanking:', ''));
    text(card, '.acr-requested', acrs.length
      ? acrs.join(', ') + (request.acr_essential ? ' (essential)' : '')
      : 'none asked');
    const until = consent.expirationDateTime ? ', until ' + consent.expirationDateTime : '';
    text(card, '.consent', (consent.consentId || request.consent_id) + until);
    const acr = card.querySelector('.acr');
    acr.value = (request.acr_values || []).includes(LOA3) ? LOA3 : LOA2;
    card.querySelector('.approve').addEventListener('click', () => decide(card, request, 'approve'));
    card.querySelector('.deny').addEventListener('click', () => decide(card, request, 'deny'));
    return card;
  }

  function timeLeft(card, seconds) {
    const left = Math.max(0, Number(seconds) || 0);
    const minutes = Math.floor(left / 60);
    const rest = String(left % 60).padStart(2, '0');
    const label = card.querySelector('.time-left');
    label.textContent = minutes + ':' + rest + ' left';
    label.classList.toggle('short', left < 60);
  }

  async function decide(card, request, action) {
    for (const button of card.querySelectorAll('button')) {
      button.disabled = true;
    }
    const who = request.client_name || request.client_id;
    let result;
    if (action === 'approve') {
      const acr = card.querySelector('.acr').value;
      const amr = acr === LOA3 ? ['pwd', 'otp'] : ['pwd'];
      result = await api('POST', 'requests/' + encodeURIComponent(request.id) + '/approve', { acr, amr });
    } else {
      result = await api('POST', 'requests/' + encodeURIComponent(request.id) + '/deny');
    }
    if (result.ok) {
      decided.add(request.id);
      say(action === 'approve'
        ? 'Approved the request of ' + who + ': its next poll gets the tokens.'
        : 'Denied the request of ' + who + ': its next poll gets access_denied.');
      card.remove();
      cards.delete(request.id);
      $('empty').hidden = cards.size > 0;
    } else {
      say('Not done: ' + describe(result), true);
      for (const button of card.querySelectorAll('button')) {
        button.disabled = false;
      }
    }
    refresh();
  }

  // --- AD-generated hint ids --------------------------------------------------------------

  async function issueHint() {
    const result = await api('POST', 'hints', { subject: holder() });
    if (!result.ok) {
      say('No hint id: ' + describe(result), true);
      return;
    }
    $('hint-id').textContent = result.data.id;
    $('hint-expiry').textContent = 'valid ' + result.data.expires_in + ' s, once';
    $('copy-hint').textContent = 'Copy';
    $('hint').hidden = false;
  }

  async function copyHint() {
    const id = $('hint-id').textContent;
    try {
      await navigator.clipboard.writeText(id);
      $('copy-hint').textContent = 'Copied';
    } catch (_) {
      // No clipboard (not a secure context, or refused): select it for a manual copy.
      const range = document.createRange();
      range.selectNodeContents($('hint-id'));
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $('copy-hint').textContent = 'Selected: press Ctrl+C';
    }
  }

  // --- AS-generated requests: the QR code's login_hint_token ------------------------------

  async function claim(loginHintToken) {
    const result = await api('POST', 'claims', { login_hint_token: loginHintToken, subject: holder() });
    if (result.ok) {
      $('login-hint-token').value = '';
      say('Claimed the request of ' + (result.data.client_name || result.data.client_id)
        + ': it is now pending below.');
      refresh();
    } else {
      say('Not claimed: ' + describe(result), true);
    }
  }

  async function claimPasted(event) {
    event.preventDefault();
    const token = $('login-hint-token').value.trim();
    if (token) {
      await claim(token);
    }
  }

  async function scan() {
    const video = $('camera');
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    } catch (_) {
      say('The camera is not available.', true);
      return;
    }
    const stop = () => {
      for (const track of stream.getTracks()) {
        track.stop();
      }
      video.srcObject = null;
      video.hidden = true;
      $('scan').disabled = false;
    };
    $('scan').disabled = true;
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    const detector = new BarcodeDetector({ formats: ['qr_code'] });
    const started = Date.now();
    const look = async () => {
      if (video.hidden) {
        return;
      }
      if (Date.now() - started > 60000) {
        stop();
        say('No QR code seen in a minute.', true);
        return;
      }
      try {
        const codes = await detector.detect(video);
        if (codes.length) {
          stop();
          $('login-hint-token').value = codes[0].rawValue;
          await claim(codes[0].rawValue.trim());
          return;
        }
      } catch (_) {
        // A frame that could not be read: try the next one.
      }
      setTimeout(look, 250);
    };
    look();
  }

  // --- Wiring -----------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut(''));
    $('holder').addEventListener('change', holderChanged);
    $('issue-hint').addEventListener('click', issueHint);
    $('copy-hint').addEventListener('click', copyHint);
    $('claim-form').addEventListener('submit', claimPasted);
    if ('BarcodeDetector' in window && navigator.mediaDevices) {
      $('scan').hidden = false;
      $('scan').addEventListener('click', scan);
    }
    start();
  });
})();
