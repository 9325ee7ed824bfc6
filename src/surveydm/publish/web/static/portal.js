// Small progressive enhancements; every page works without JavaScript.
document.addEventListener("DOMContentLoaded", () => {
  // Filters of the job list apply as soon as a choice changes.
  const form = document.getElementById("job-filters");
  if (form) {
    form.querySelectorAll("select").forEach((el) =>
      el.addEventListener("change", () => form.requestSubmit()));
  }
  // Ctrl+Enter runs the SQL query.
  const q = document.getElementById("sql-query");
  if (q) {
    q.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) document.getElementById("sql-form").requestSubmit();
    });
  }
  // Rows of job tables are clickable.
  document.querySelectorAll("tr[data-job-id]").forEach((tr) => {
    tr.style.cursor = "pointer";
    tr.addEventListener("click", (ev) => {
      if (ev.target.tagName !== "A") window.location = "/jobs/" + tr.dataset.jobId;
    });
  });
});
