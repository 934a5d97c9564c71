// The performer's controls. Read-only (a disabled fieldset) until the performer token is
// accepted; every command's reply (ack or the server's error) is shown beside its control.
//
// The fields show the stream's settings until the performer edits or sends them; from then on
// they hold what the performer asked for (now_playing shows the mix of a transition in progress,
// which is not what anyone wants to edit).

import { commands, RANGES } from "./protocol.js";

const TOKEN_KEY = "streamer.performerToken"; // sessionStorage: survives a reload, not the tab

const $ = (id) => document.getElementById(id);

export class Steering {
  constructor(connection) {
    this.connection = connection;
    this.maxPrompts = 8;
    this.maxPromptChars = 500;
    this.edited = new Set(); // fields the performer has touched
    this.paused = false;
    this.seedLoops = new Set();
    this.bind();
    this.setPromptRows([{ text: "", weight: 1 }]);
    this.setRole("none");
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) $("token").value = saved;
  }

  bind() {
    const connection = this.connection;
    $("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.unlock($("token").value.trim());
    });
    $("lock").addEventListener("click", () => this.lock());
    connection.addEventListener("hello", () => {
      if (connection.token === null && sessionStorage.getItem(TOKEN_KEY)) this.unlock(sessionStorage.getItem(TOKEN_KEY));
      else if (connection.token === null) this.setRole(connection.role);
    });
    connection.addEventListener("role", (event) => this.setRole(event.detail.role));
    connection.addEventListener("state", (event) => {
      if (event.detail.state !== "open") this.setRole("none", "Reconnecting…");
    });

    $("prompts-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendPrompts();
    });
    $("prompts-form").addEventListener("input", () => this.edited.add("prompts"));
    $("add-prompt").addEventListener("click", () => {
      this.edited.add("prompts");
      this.setPromptRows([...this.readPrompts(), { text: "", weight: 1 }]);
      $("prompt-rows").lastElementChild.querySelector("input[type=text]").focus();
    });

    const sendTransition = () => {
      const amount = Number($("transition").value);
      const unit = $("transition-unit").value;
      if ($("transition").value === "" || !$("transition").checkValidity()) return;
      this.send(commands.setTransition(amount, unit), "transition-reply");
    };
    $("transition").addEventListener("change", sendTransition);
    $("transition-unit").addEventListener("change", () => {
      $("transition").max = String(unitRange($("transition-unit").value)[1]);
      sendTransition();
    });

    $("seed-loop").addEventListener("change", () => {
      const name = $("seed-loop").value.trim();
      this.edited.add("seed-loop");
      if (name) this.send(commands.setSeedLoop(name), "seed-loop-reply");
    });

    this.bindSlider("denoising", (value) => value.toFixed(2), commands.setDenoising);
    this.bindSlider("guidance", (value) => value.toFixed(1), commands.setGuidance);

    $("seed").addEventListener("change", () => this.sendSeed());
    $("random-seed").addEventListener("click", () => {
      $("seed").value = String(Math.floor(Math.random() * (RANGES.seed[1] + 1)));
      this.sendSeed();
    });

    $("negative").addEventListener("change", () => {
      this.edited.add("negative");
      this.send(commands.setNegativePrompt($("negative").value), "negative-reply");
    });

    $("pause").addEventListener("click", () => {
      this.send(this.paused ? commands.resume() : commands.pause(), "transport-reply").then((ok) => {
        if (ok) this.showPaused(!this.paused);
      });
    });
    $("skip").addEventListener("click", () => this.send(commands.skip(), "transport-reply"));
    $("capture").addEventListener("click", () => this.capture(Number($("capture-bars").value)));
  }

  /** The live input's last bars become the seed loop; the reply names the capture. */
  async capture(bars) {
    showReply("capture-reply", null, "capturing…");
    try {
      const details = await this.connection.request(commands.capture(bars));
      const clipped = details.clipped_samples ? `, clipped (levelled)` : "";
      showReply("capture-reply", true, `${details.capture}: ${details.bars} bars at ${details.tempo_bpm} BPM${clipped}`);
    } catch (error) {
      showReply("capture-reply", false, `${error.message} (${error.code})`);
    }
  }

  bindSlider(id, format, command) {
    const input = $(id);
    const show = () => {
      $(`${id}-value`).value = format(Number(input.value));
      input.setAttribute("aria-valuetext", format(Number(input.value)));
    };
    input.addEventListener("input", () => {
      this.edited.add(id);
      show();
    });
    // Sent when released, not on every step: each change re-plans the frames being generated.
    input.addEventListener("change", () => this.send(command(Number(input.value)), `${id}-reply`));
    show();
  }

  sendSeed() {
    const field = $("seed");
    if (field.value === "" || !field.checkValidity() || !Number.isInteger(Number(field.value))) {
      showReply("seed-reply", false, `a seed is a whole number from 0 to ${RANGES.seed[1]}`);
      return;
    }
    this.send(commands.setSeed(Number(field.value)), "seed-reply");
  }

  // ---- authentication ------------------------------------------------------------------------

  async unlock(token) {
    if (!token) {
      showReply("auth-reply", false, "enter the performer token printed by streamer serve");
      return;
    }
    showReply("auth-reply", null, "checking…");
    try {
      const role = await this.connection.authenticate(token);
      if (role === "performer") {
        sessionStorage.setItem(TOKEN_KEY, token);
      } else {
        showReply("auth-reply", false, "that token lets you listen, not steer");
      }
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      showReply("auth-reply", false, `${error.message} (${error.code})`);
    }
  }

  lock() {
    this.connection.forgetToken();
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    this.setRole("listener");
    // The server keeps the role for this connection; reconnecting drops it.
    this.connection.socket?.close(1000, "performer locked the controls");
  }

  setRole(role, message) {
    const performer = role === "performer";
    $("steer").disabled = !performer;
    $("lock").hidden = !performer;
    $("unlock").hidden = performer;
    $("token").disabled = performer;
    if (performer) showReply("auth-reply", true, "You are steering the stream.");
    else if (message) showReply("auth-reply", null, message);
    else if (!$("auth-reply").classList.contains("error")) showReply("auth-reply", null, "Read-only: enter the token to steer.");
  }

  // ---- commands ------------------------------------------------------------------------------

  /** Send a command, show its reply beside the control; resolves true on an ack. */
  async send(command, replyId) {
    showReply(replyId, null, "sending…");
    try {
      await this.connection.request(command);
      showReply(replyId, true, "applied");
      return true;
    } catch (error) {
      showReply(replyId, false, `${error.message} (${error.code})`);
      return false;
    }
  }

  sendPrompts() {
    const prompts = this.readPrompts().filter((prompt) => prompt.text.trim() !== "");
    if (prompts.length === 0) {
      showReply("prompts-reply", false, "write at least one prompt");
      return;
    }
    this.edited.add("prompts");
    this.send(commands.setPrompts(prompts), "prompts-reply");
  }

  readPrompts() {
    return [...$("prompt-rows").children].map((row) => ({
      text: row.querySelector("input[type=text]").value,
      weight: Number(row.querySelector("input[type=range]").value),
    }));
  }

  setPromptRows(prompts) {
    const list = $("prompt-rows");
    list.replaceChildren();
    prompts.slice(0, this.maxPrompts).forEach((prompt, index) => {
      const row = $("prompt-row").content.firstElementChild.cloneNode(true);
      const text = row.querySelector("input[type=text]");
      const weight = row.querySelector("input[type=range]");
      const value = row.querySelector("output");
      text.value = prompt.text;
      text.maxLength = this.maxPromptChars;
      text.setAttribute("aria-label", `Prompt ${index + 1}`);
      weight.max = String(Math.max(1, Math.ceil(prompt.weight)));
      weight.value = String(prompt.weight);
      weight.setAttribute("aria-label", `Weight of prompt ${index + 1}`);
      const showWeight = () => {
        value.value = Number(weight.value).toFixed(2);
        weight.setAttribute("aria-valuetext", value.value);
      };
      weight.addEventListener("input", showWeight);
      showWeight();
      row.querySelector(".remove").addEventListener("click", () => {
        this.edited.add("prompts");
        const rows = this.readPrompts();
        rows.splice(index, 1);
        this.setPromptRows(rows.length ? rows : [{ text: "", weight: 1 }]);
      });
      list.append(row);
    });
    $("add-prompt").disabled = list.children.length >= this.maxPrompts;
  }

  // ---- the stream's state --------------------------------------------------------------------

  setLimits(limits) {
    this.maxPrompts = limits?.max_prompts ?? this.maxPrompts;
    this.maxPromptChars = limits?.max_prompt_chars ?? this.maxPromptChars;
    $("negative").maxLength = this.maxPromptChars;
    this.setPromptRows(this.readPrompts());
  }

  /** Show the stream's settings in the fields the performer has not touched. */
  showNowPlaying(event) {
    const untouched = (id) => !this.edited.has(id) && document.activeElement !== $(id);
    if (Array.isArray(event.prompts) && event.prompts.length && !this.edited.has("prompts") && !$("prompts-form").contains(document.activeElement)) {
      this.setPromptRows(event.prompts.map(({ text, weight }) => ({ text: String(text), weight: Number(weight) })));
    }
    if (typeof event.seed_loop === "string" && event.seed_loop) {
      if (!this.seedLoops.has(event.seed_loop)) {
        this.seedLoops.add(event.seed_loop);
        const option = document.createElement("option");
        option.value = event.seed_loop;
        $("seed-loops").append(option);
      }
      if (untouched("seed-loop")) $("seed-loop").value = event.seed_loop;
    }
    for (const id of ["denoising", "guidance"]) {
      if (typeof event[id] === "number" && untouched(id)) {
        $(id).value = String(event[id]);
        $(id).dispatchEvent(new Event("input"));
        this.edited.delete(id); // the input event above was ours, not the performer's
      }
    }
    if (Number.isInteger(event.seed)) $("seed").placeholder = `now ${event.seed}`;
    if (typeof event.negative_prompt === "string" && untouched("negative")) $("negative").value = event.negative_prompt;
    if (typeof event.paused === "boolean") this.showPaused(event.paused);
  }

  showPaused(paused) {
    this.paused = paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    $("pause").setAttribute("aria-pressed", String(paused));
  }
}

function unitRange(unit) {
  return unit === "bars" ? RANGES.transitionBars : RANGES.transitionSeconds;
}

/** ok: true (acked), false (error), null (in progress / information). */
function showReply(id, ok, text) {
  const output = $(id);
  output.value = text;
  output.classList.toggle("ok", ok === true);
  output.classList.toggle("error", ok === false);
  output.setAttribute("role", ok === false ? "alert" : "status");
}
