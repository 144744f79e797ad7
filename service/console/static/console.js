// The console's only script: a print button, and a reload while an export runs.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-print]")) {
    button.addEventListener("click", () => window.print());
  }
  const poll = document.querySelector("[data-poll]");
  if (poll) {
    setTimeout(() => window.location.reload(), Number(poll.dataset.poll) * 1000);
  }
});
