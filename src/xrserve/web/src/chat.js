// chat.js: the LLM through the OpenAI-compatible /v1/chat/completions, streamed (SSE over fetch).

export function setUpChat({ form, input, log, app }) {
  const history = [];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    history.push({ role: "user", content: text });
    line(log, "user", text);
    const answer = line(log, "assistant", "");
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...app.headers() },
        body: JSON.stringify({ model: "smollm2", messages: history, stream: true, max_tokens: 200 }),
      });
      if (!response.ok) throw new Error((await response.json()).error?.message || response.statusText);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const events = buffer.split("\n\n");
        buffer = events.pop();
        for (const event of events) {
          const data = event.replace(/^data: /, "");
          if (data === "[DONE]") continue;
          const delta = JSON.parse(data).choices?.[0]?.delta?.content;
          if (delta) answer.textContent += delta;
        }
      }
      history.push({ role: "assistant", content: answer.textContent });
      answer.dataset.done = "true";
    } catch (error) {
      answer.className = "error";
      answer.textContent = String(error.message || error);
    }
  });
}

export function line(log, role, text) {
  const element = document.createElement("p");
  element.className = role;
  element.textContent = text;
  log.append(element);
  log.scrollTop = log.scrollHeight;
  return element;
}
