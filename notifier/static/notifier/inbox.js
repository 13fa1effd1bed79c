/* notifier inbox widget: one file, no dependencies, no build step.

     <script src="https://notify.example.com/static/notifier/inbox.js" defer></script>
     <notifier-inbox user-token="rt_…" api="https://notify.example.com"></notifier-inbox>

   A bell with the unread badge and a popover list of the user's inbox, through the public inbox API with
   the recipient token alone (the page's origin must be in NOTIFIER_INBOX_ALLOWED_ORIGINS), kept live by
   the Server-Sent Events stream. `stream` is the stream server's origin when it is not the API's (by
   default the API's: a proxy routes the stream's path to it). `user-id` is optional: the token names its
   user. Set `user-token` again
   to renew it; the element fires `notifier-inbox-unauthorized` when the API refuses the token.
   Everything from the API is shown with textContent, never as HTML, and only http(s) links are followed.
   Style it with the CSS properties --notifier-accent and --notifier-badge, or ::part(bell) / ::part(panel). */
(() => {
  const PAGE_SIZE = 20;
  const CSS = `
:host { position: relative; display: inline-block; font: 15px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: #1f2328; --accent: var(--notifier-accent, #1f6feb); --badge: var(--notifier-badge, #cf222e); }
button { font: inherit; cursor: pointer; }
.bell { position: relative; width: 44px; height: 44px; border: 0; border-radius: 50%; background: transparent; color: inherit; }
.bell:hover { background: #eaeef2; }
.bell svg { width: 24px; height: 24px; vertical-align: middle; }
.badge { position: absolute; top: 2px; right: 0; min-width: 18px; padding: 0 5px; border-radius: 9px; box-sizing: border-box;
  background: var(--badge); color: #fff; font-size: 12px; font-weight: 600; line-height: 18px; text-align: center; }
.badge[hidden], [hidden] { display: none !important; }
.panel { position: absolute; right: 0; top: 48px; z-index: 1000; width: 360px; max-width: calc(100vw - 16px);
  background: #fff; border: 1px solid #d0d7de; border-radius: 8px; box-shadow: 0 8px 24px rgba(31,35,40,.2); overflow: hidden; }
.head { display: flex; align-items: center; justify-content: space-between; padding: 10px 14px; border-bottom: 1px solid #d0d7de; }
.head h2 { margin: 0; font-size: 16px; }
.link { border: 0; background: none; color: var(--accent); padding: 6px; text-decoration: underline; }
.link:disabled { color: #6e7781; cursor: default; text-decoration: none; }
ul { list-style: none; margin: 0; padding: 0; max-height: min(420px, 70vh); overflow-y: auto; }
li { border-bottom: 1px solid #eaeef2; }
.item { display: block; width: 100%; box-sizing: border-box; padding: 10px 14px 10px 28px; border: 0; background: #fff;
  text-align: left; color: inherit; text-decoration: none; position: relative; }
.item:hover { background: #f6f8fa; }
.unread { background: #f1f7ff; }
.dot { position: absolute; left: 11px; top: 16px; width: 8px; height: 8px; border-radius: 50%; background: var(--accent); }
.title { display: block; font-weight: 600; }
.body { display: block; margin-top: 2px; color: #424a53; overflow-wrap: anywhere; }
.meta { display: block; margin-top: 4px; font-size: 12px; color: #57606a; }
.empty, .error { padding: 18px 14px; margin: 0; color: #57606a; text-align: center; }
.error { color: #82071e; }
.more { display: block; width: 100%; padding: 10px; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
:focus-visible { outline: 3px solid #0b3d91; outline-offset: -3px; }`;
  const BELL = ["M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9", "M13.7 21a2 2 0 0 1-3.4 0"];

  // The user a recipient token was issued for: rt_<payload>:<time>:<signature>, the payload base64url
  // JSON ({"u": user id}), zlib-compressed when it starts with "." (Django's signing.dumps).
  async function tokenUser(token) {
    let payload = token.replace(/^rt_/, "").split(":")[0];
    const compressed = payload.startsWith(".");
    if (compressed) payload = payload.slice(1);
    const bytes = Uint8Array.from(atob(payload.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    const text = compressed
      ? await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"))).text()
      : new TextDecoder().decode(bytes);
    return JSON.parse(text).u;
  }

  function webLink(url) {
    if (!url) return null;
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (error) {
      return null;
    }
  }

  function when(iso) {
    const seconds = (Date.parse(iso) - Date.now()) / 1000;
    const format = new Intl.RelativeTimeFormat(undefined, {numeric: "auto"});
    for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
      if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
    }
    return format.format(0, "second");
  }

  function el(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bellIcon() {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    const attributes = {viewBox: "0 0 24 24", "aria-hidden": "true", fill: "none", stroke: "currentColor",
                        "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round"};
    for (const [name, value] of Object.entries(attributes)) svg.setAttribute(name, value);
    for (const d of BELL) {
      const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", d);
      svg.appendChild(path);
    }
    return svg;
  }

  class NotifierInbox extends HTMLElement {
    static get observedAttributes() { return ["user-token", "api", "stream", "user-id"]; }

    constructor() {
      super();
      const root = this.attachShadow({mode: "open"});
      root.appendChild(el("style", {}, CSS));
      this.bell = el("button", {class: "bell", part: "bell", type: "button", "aria-haspopup": "dialog",
                                "aria-expanded": "false", "aria-controls": "panel", "aria-label": "Notifications"});
      this.bell.appendChild(bellIcon());
      this.badgeNode = el("span", {class: "badge", "aria-hidden": "true", hidden: ""});
      this.bell.appendChild(this.badgeNode);
      this.panel = el("div", {class: "panel", part: "panel", id: "panel", role: "dialog", "aria-label": "Notifications",
                              tabindex: "-1", hidden: ""});
      const head = el("div", {class: "head"});
      this.markAll = el("button", {class: "link", type: "button"}, "Mark all read");
      head.append(el("h2", {}, "Notifications"), this.markAll);
      this.list = el("ul", {role: "list"});
      this.message = el("p", {class: "empty", role: "status"});
      this.more = el("button", {class: "link more", type: "button", hidden: ""}, "Load older");
      this.panel.append(head, this.message, this.list, this.more);
      root.append(this.bell, this.panel);
      this.items = new Map();
      this.unread = 0;
      this.bell.addEventListener("click", () => this.toggle());
      this.markAll.addEventListener("click", () => this.readAll());
      this.more.addEventListener("click", () => this.load(this.cursor));
      this.panel.addEventListener("keydown", (event) => { if (event.key === "Escape") this.toggle(false); });
      this.outside = (event) => { if (!event.composedPath().includes(this)) this.toggle(false, false); };
    }

    connectedCallback() {
      document.addEventListener("click", this.outside);
      this.restart();
    }

    disconnectedCallback() {
      document.removeEventListener("click", this.outside);
      this.stop();
    }

    attributeChangedCallback() {
      if (this.isConnected) this.restart();
    }

    restart() {  // several attributes set at once start once
      clearTimeout(this.pending);
      this.pending = setTimeout(() => this.start(), 0);
    }

    async start() {
      this.stop();
      const token = this.getAttribute("user-token") || "";
      const api = (this.getAttribute("api") || location.origin).replace(/\/+$/, "");
      const streamApi = (this.getAttribute("stream") || api).replace(/\/+$/, "");
      if (!token) return;
      try {
        const user = this.getAttribute("user-id") || await tokenUser(token).catch(() => {
          throw new Error("This notifications token is not valid.");
        });
        this.token = token;
        const path = `/api/v1/users/${encodeURIComponent(user)}/notifications`;
        this.base = api + path;
        this.streamUrl = `${streamApi}${path}/stream`;
        this.items = new Map();
        this.lastId = "";
        await this.load();
        this.listen(1000);
      } catch (error) {
        this.fail(error);
      }
    }

    stop() {
      clearTimeout(this.retry);
      if (this.stream) this.stream.close();
      this.stream = null;
    }

    async call(path, method, body, keepalive) {
      const headers = {Authorization: `Bearer ${this.token}`, Accept: "application/json"};
      if (body) headers["Content-Type"] = "application/json";
      const response = await fetch(this.base + path, {method: method || "GET", headers, keepalive: !!keepalive,
                                                      body: body ? JSON.stringify(body) : undefined});
      if (response.status === 401) {
        this.stop();
        this.dispatchEvent(new CustomEvent("notifier-inbox-unauthorized", {bubbles: true, composed: true}));
        throw new Error("Please sign in again to see your notifications.");
      }
      if (!response.ok) throw new Error("Notifications could not be loaded. Try again later.");
      return response.json();
    }

    async load(cursor) {
      try {
        const query = `?limit=${PAGE_SIZE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
        const page = await this.call(query);
        // The list keeps the API's order (newest first): a first page goes on top, an older one below.
        const fresh = new Map(page.notifications.map((item) => [item.id, item]));
        this.items = cursor ? new Map([...this.items, ...fresh]) : new Map([...fresh, ...this.items]);
        if (!cursor || this.cursor === cursor) this.cursor = page.next_cursor;
        this.count(page);
        this.render();
      } catch (error) {
        this.fail(error);
      }
    }

    listen(delay) {
      const stream = new EventSource(`${this.streamUrl}?token=${encodeURIComponent(this.token)}`);
      this.stream = stream;
      let opened = false;
      stream.addEventListener("open", () => {
        delay = 1000;
        // A reconnect sends Last-Event-ID and the stream replays what came meanwhile; before any item has
        // come there is no id to send, so catch up from the first page instead.
        if (opened && !this.lastId) this.load();
        opened = true;
      });
      stream.addEventListener("notification", (event) => {
        const item = JSON.parse(event.data);
        this.lastId = event.lastEventId;
        this.items.delete(item.id);
        this.items = new Map([[item.id, item], ...this.items]);
        this.render();
      });
      stream.addEventListener("unread_count", (event) => this.count(JSON.parse(event.data)));
      stream.addEventListener("changed", (event) => {
        const change = JSON.parse(event.data);
        if (change.all_read) this.items.forEach((item) => { item.read = true; });
        const item = this.items.get(change.id);
        if (item) item.read = true;  // another tab read it (unread again is rare: the next load shows it)
        this.render();
      });
      // EventSource reconnects by itself, with Last-Event-ID, when a stream ends; a refused or broken
      // one is closed for good: open a new one a little later, catching up with a fresh first page.
      stream.addEventListener("error", () => {
        if (stream.readyState !== EventSource.CLOSED || this.stream !== stream) return;
        this.retry = setTimeout(() => this.load().then(() => { if (this.stream === stream) this.listen(delay * 2); }),
                                Math.min(delay, 30000));
      });
    }

    count(badge) {
      this.unread = badge.unread_count;
      const text = badge.unread_count_capped ? `${badge.unread_count}+` : String(badge.unread_count);
      this.badgeNode.textContent = text;
      this.badgeNode.hidden = !badge.unread_count;
      this.bell.setAttribute("aria-label", badge.unread_count ? `Notifications, ${text} unread` : "Notifications");
      this.markAll.disabled = !badge.unread_count;
    }

    render() {
      const items = [...this.items.values()];
      this.list.replaceChildren(...items.map((item) => this.row(item)));
      this.message.className = "empty";
      this.message.textContent = items.length ? "" : "No notifications yet.";
      this.message.hidden = !!items.length;
      this.more.hidden = !this.cursor;
    }

    row(item) {
      const href = webLink(item.action_url);
      const node = el(href ? "a" : "button", href ? {href} : {type: "button"});
      node.className = "item" + (item.read ? "" : " unread");
      if (!item.read) node.append(el("span", {class: "dot", "aria-hidden": "true"}), el("span", {class: "sr"}, "Unread: "));
      node.append(el("span", {class: "title"}, item.title || ""));
      if (item.body) node.append(el("span", {class: "body"}, item.body));
      const time = el("time", {class: "meta", datetime: item.created_at, title: new Date(item.created_at).toLocaleString()},
                      when(item.created_at));
      node.append(time);
      node.addEventListener("click", () => this.read(item, node, !!href));
      const li = el("li", {"data-id": item.id});
      li.append(node);
      return li;
    }

    async read(item, node, leaving) {
      if (item.read) return;
      item.read = true;
      // The node stays: a link's click goes on to open it. `leaving`: the request must outlive the page.
      node.classList.remove("unread");
      node.querySelectorAll(".dot, .sr").forEach((child) => child.remove());
      try {
        this.count(await this.call(`/${encodeURIComponent(item.id)}`, "PATCH", {read: true}, leaving));
      } catch (error) {
        item.read = false;
        this.render();
        this.fail(error);
      }
    }

    async readAll() {
      try {
        this.count(await this.call("/mark-all-read", "POST", {}));
        this.items.forEach((item) => { item.read = true; });
        this.render();
      } catch (error) {
        this.fail(error);
      }
    }

    fail(error) {
      this.message.className = "error";
      this.message.textContent = error && error.message ? error.message : "Something went wrong.";
      this.message.hidden = false;
    }

    toggle(open = this.panel.hidden, focus = true) {
      this.panel.hidden = !open;
      this.bell.setAttribute("aria-expanded", String(open));
      if (focus) (open ? this.panel : this.bell).focus();
    }
  }

  if (!customElements.get("notifier-inbox")) customElements.define("notifier-inbox", NotifierInbox);
})();
