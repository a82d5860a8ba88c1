// Copy buttons: <button class="copy" data-copy="text">. Loaded from our own origin
// (the pages' Content-Security-Policy allows no inline script).
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var text = button.getAttribute("data-copy") || "";
  var done = function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { select(button); });
  } else {
    select(button);
  }
});

function select(button) {
  var code = button.parentElement.querySelector("code");
  if (!code) return;
  var range = document.createRange();
  range.selectNodeContents(code);
  var selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  button.textContent = "Selected: press Ctrl+C";
}
