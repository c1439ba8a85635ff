// lakesync console: the few behaviours htmx does not cover. Every form also works without it.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]")) target.form.submit();
  });

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) document.getElementById(opener.getAttribute("data-open-dialog")).showModal();
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) closer.closest("dialog").close();
  });

  function csrfToken(form) {
    return form.querySelector("input[name=csrf_token]").value;
  }

  function setupUpload(form) {
    var input = form.querySelector("input[type=file]");
    var zone = form.querySelector("[data-dropzone]");
    var errorBox = form.querySelector("[data-upload-error]");
    var progressBox = form.querySelector("[data-progress]");
    var bar = progressBox.querySelector("progress");
    var label = progressBox.querySelector("[data-progress-text]");
    var submit = form.querySelector("button[type=submit]");

    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.remove("over");
      });
    });
    zone.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) input.files = event.dataTransfer.files;
    });

    function showError(message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
      progressBox.hidden = true;
      submit.disabled = false;
    }

    function showProgress(loaded, total) {
      var percent = total ? Math.floor((loaded / total) * 100) : 0;
      bar.value = percent;
      label.textContent = percent < 100 ? percent + "%" : "Converting…";
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!input.files.length) {
        showError("Choose a file to upload.");
        return;
      }
      // The server would refuse it only once the whole body had been sent.
      var limit = Number(form.getAttribute("data-max-bytes"));
      if (limit && input.files[0].size > limit) {
        showError("The file is larger than this server accepts (" + Math.round(limit / 1048576) + " MB).");
        return;
      }
      var data = new FormData(form);
      ["name", "description"].forEach(function (field) {
        if (!String(data.get(field) || "").trim()) data.delete(field);
      });
      errorBox.hidden = true;
      progressBox.hidden = false;
      submit.disabled = true;
      showProgress(0, 1);

      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) showProgress(e.loaded, e.total);
      });
      xhr.addEventListener("load", function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (ignored) { /* not JSON: a proxy's page */ }
        if (xhr.status === 201 && body) {
          bar.value = 100;
          label.textContent = "Done";
          window.location.assign(body.location);
        } else if (body && body.error) {
          showError(body.error.message);
        } else {
          showError("The upload failed (HTTP " + xhr.status + ").");
        }
      });
      xhr.addEventListener("error", function () {
        showError("The upload was interrupted: the server could not be reached.");
      });
      xhr.send(data);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-upload]");
    if (form) setupUpload(form);
  });
})();
