"""End-to-end in a real headless Chromium (Selenium + Debian's chromium and
chromedriver) against gunicorn: a real photo and its result, in view on a laptop
and on a phone, a bad file and its error (in view too), the "not one of the
known models" state, an example photo, script injection through a file name,
refused files, a touch screen, the page while the model loads, and the API page."""

import shutil
import threading

import pytest
from werkzeug.serving import make_server

from app import create_app
from tests.conftest import SF_TEST, SHIPPED_MODEL, absent, curl, hold_model_loading, require, shipped_validation_samples
from tests.helpers import free_port

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.shared]

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
LAPTOP, PHONE = (1280, 720), (390, 844)  # CSS pixels of the viewport; the phone is an iPhone 12-14 screen


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        absent("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=%d,%d" % LAPTOP):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    viewport(driver, *LAPTOP)
    yield driver
    driver.quit()


def viewport(browser, width, height, touch=False):
    """Make the page's viewport exactly ``width x height`` CSS pixels (a phone's when
    ``touch``: mobile layout, touch screen, no mouse to hover with)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": touch})
    browser.execute_cdp_cmd("Emulation.setTouchEmulationEnabled",
                            {"enabled": touch, "maxTouchPoints": 5 if touch else 1})


@pytest.fixture()
def phone(browser):
    """The browser as a phone (390x844, touch) for one test, a laptop again afterwards."""
    viewport(browser, *PHONE, touch=True)
    yield browser
    viewport(browser, *LAPTOP)


def in_view(browser, element):
    """Whether ``element`` is wholly inside the viewport as the page stands (no scrolling by the test)."""
    return browser.execute_script(
        "const box = arguments[0].getBoundingClientRect();"
        "return box.height > 0 && box.top >= 0 && box.left >= 0 &&"
        " box.bottom <= window.innerHeight && box.right <= window.innerWidth;", element)


def state(browser):
    return browser.find_element(By.ID, "app").get_attribute("data-state")


def wait_for_answer(browser):
    WebDriverWait(browser, 30).until(lambda b: state(b) in ("done", "error"))
    return state(browser)


def upload(browser, server, path):
    browser.get(server)
    browser.find_element(By.ID, "file-input").send_keys(str(path))
    return wait_for_answer(browser)


def pretty(label):
    return " ".join(word.capitalize() for word in label.split("_"))


def rows(browser):
    return browser.find_elements(By.CSS_SELECTOR, "#results .result")


def test_page_classifies_a_real_held_out_photo(browser, server):
    sample = next(s for s in shipped_validation_samples() if s.label == "lada_kalina")
    assert upload(browser, server, sample.path) == "done"
    assert len(rows(browser)) == 3
    assert rows(browser)[0].find_element(By.CSS_SELECTOR, ".result-label").text == pretty(sample.label)
    assert rows(browser)[0].find_element(By.CSS_SELECTOR, ".result-prob").text.endswith("%")
    assert browser.find_element(By.ID, "preview").get_attribute("src").startswith("blob:")
    assert not browser.find_element(By.ID, "unknown").is_displayed()
    assert browser.find_element(By.ID, "results-card").get_attribute("data-known") == "true"


def test_page_shows_the_api_error_for_a_bad_file(browser, server, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a photo")
    assert upload(browser, server, fake) == "error"
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "not a JPEG" in error.text and "holiday.jpg" in error.text
    assert not browser.find_element(By.ID, "results-card").is_displayed()


def test_page_says_when_a_photo_is_not_one_of_the_known_models(browser, server):
    photos = sorted(require(SF_TEST).glob("*.jpg"))
    photo = next(p for p in photos if curl("-F", f"file=@{p}", f"{server}/predict")[1]["known_model"] is False)
    assert upload(browser, server, photo) == "done"
    note = browser.find_element(By.ID, "unknown")
    assert note.is_displayed() and "Not one of the known models" in note.text
    assert browser.find_element(By.ID, "results-card").get_attribute("data-known") == "false"
    assert len(rows(browser)) == 3  # the closest guesses are still listed


def test_clicking_an_example_photo_classifies_it(browser, server, examples_dir):
    require(examples_dir / "a_kia_rio.jpg")
    browser.get(server)
    examples = browser.find_elements(By.CSS_SELECTOR, "#examples button.example")
    assert len(examples) == 2
    examples[0].click()
    assert wait_for_answer(browser) == "done"
    assert rows(browser)[0].find_element(By.CSS_SELECTOR, ".result-label").text == "Kia Rio"
    assert browser.find_element(By.ID, "file-name").text == "a_kia_rio.jpg"


def no_alert(browser):
    try:
        browser.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_script_in_a_file_name_stays_text(browser, server, tmp_path):
    name = """<img src=x onerror="document.title='pwned';alert(1)">.jpg"""
    for content, expected in ((b"not a photo", "error"), (None, "done")):
        path = tmp_path / name
        if content is None:
            sample = next(s for s in shipped_validation_samples() if s.label == "mazda_3")
            shutil.copy(sample.path, path)
        else:
            path.write_bytes(content)
        assert upload(browser, server, path) == expected
        assert browser.find_element(By.ID, "file-name").text == name
        if expected == "error":
            assert name in browser.find_element(By.ID, "error").text  # the server's message, shown as text
        assert browser.find_elements(By.CSS_SELECTOR, "#file-name *, #error *, #results img") == []
        assert no_alert(browser) and browser.title == "Car model classifier"


def test_phone_width_layout(phone, server):
    sample = next(s for s in shipped_validation_samples() if s.label == "toyota_camry")
    width = phone.execute_script("return document.documentElement.clientWidth")
    assert width == PHONE[0]
    assert upload(phone, server, sample.path) == "done"
    assert phone.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scroll
    for element_id in ("drop-zone", "classify", "results-card"):
        box = phone.find_element(By.ID, element_id).rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, element_id
    button = phone.find_element(By.ID, "classify").rect
    assert button["width"] > width * 0.8  # full-width button on small screens


def test_the_answer_is_in_view_on_a_laptop_and_on_a_phone(browser, server, examples_dir):
    sample = next(s for s in shipped_validation_samples() if s.label == "kia_rio")
    for size, touch in ((LAPTOP, False), (PHONE, True)):
        viewport(browser, *size, touch=touch)
        assert upload(browser, server, sample.path) == "done", size
        top = browser.find_element(By.CSS_SELECTOR, '[data-testid="top-prediction"]')
        assert top.find_element(By.CSS_SELECTOR, ".result-label").text == "Kia Rio"
        assert in_view(browser, top), size
    viewport(browser, *LAPTOP)


def test_an_error_is_in_view_on_a_laptop_and_on_a_phone(browser, server, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    for size, touch in ((LAPTOP, False), (PHONE, True)):
        viewport(browser, *size, touch=touch)
        assert upload(browser, server, fake) == "error", size
        assert in_view(browser, browser.find_element(By.ID, "error")), size
    viewport(browser, *LAPTOP)


def preview_shown(browser):
    return browser.find_element(By.ID, "preview").is_displayed()


def test_a_file_that_is_no_image_leaves_no_broken_image(browser, server, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"%PDF-1.7 renamed to .jpg")
    assert upload(browser, server, fake) == "error"
    assert not preview_shown(browser)  # not a broken-image icon


def test_a_pdf_chosen_after_a_photo_clears_the_photo(browser, server, tmp_path):
    sample = next(s for s in shipped_validation_samples() if s.label == "mazda_3")
    assert upload(browser, server, sample.path) == "done" and preview_shown(browser)
    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%%EOF\n")
    browser.find_element(By.ID, "file-input").send_keys(str(pdf))
    assert wait_for_answer(browser) == "error"
    assert "image file" in browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "file-name").text == "invoice.pdf"
    assert not preview_shown(browser) and not browser.find_element(By.ID, "results-card").is_displayed()
    assert not browser.find_element(By.ID, "classify").is_enabled()  # nothing left to classify


def test_no_drag_and_drop_on_a_touch_screen(browser, server, phone):
    phone.get(server)
    assert not phone.find_element(By.CSS_SELECTOR, ".drop-hint").is_displayed()
    viewport(browser, *LAPTOP)
    browser.get(server)
    assert "Drag and drop" in browser.find_element(By.CSS_SELECTOR, ".drop-hint").text


def test_plain_words_and_the_photo_hint(browser, server):
    browser.get(server)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "TTA" not in page and "mirror image" in page
    assert browser.find_element(By.ID, "photo-hint").text  # from the model's metadata, or the model card's default


@pytest.fixture()
def loading_server(monkeypatch):
    """The app in a thread (werkzeug) whose model stays loading until ``release`` is set: ``(url, release)``."""
    release = hold_model_loading(monkeypatch, 120)
    # /predict answers 503 at once (no wait for the model), so that the page's own Retry-After loop runs.
    flask_app = create_app({"MODEL_DIR": str(SHIPPED_MODEL), "LOAD_WAIT_S": 0})
    http = make_server("127.0.0.1", free_port(), flask_app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_port}", release
    release.set()
    http.shutdown()
    flask_app.extensions["model"].wait(120)


def test_while_the_model_loads_the_page_retries_and_then_answers(browser, loading_server):
    url, release = loading_server
    sample = next(s for s in shipped_validation_samples() if s.label == "nissan_qashqai")
    browser.get(url)
    assert "loading" in browser.find_element(By.ID, "known").text
    browser.find_element(By.ID, "file-input").send_keys(str(sample.path))
    WebDriverWait(browser, 10).until(lambda b: "trying again" in b.find_element(By.ID, "status").text)
    assert state(browser) == "busy"  # not an error: it waits for the model (Retry-After)
    release.set()
    WebDriverWait(browser, 60).until(lambda b: state(b) in ("done", "error"))
    assert state(browser) == "done"
    assert rows(browser)[0].find_element(By.CSS_SELECTOR, ".result-label").text == "Nissan Qashqai"
    WebDriverWait(browser, 30).until(lambda b: "Known models" in b.find_element(By.ID, "known").text)
    assert "Kia Rio" in browser.find_element(By.ID, "known").text
    assert browser.find_element(By.ID, "model-version").text not in ("", "loading")


def test_api_page_lists_the_operations_and_fits_a_phone(phone, server):
    phone.get(f"{server}/docs")
    titles = [h.text for h in phone.find_elements(By.CSS_SELECTOR, ".docs-op h3")]
    assert "POST /predict" in titles and "GET /v1/models/{name}" in titles
    width = phone.execute_script("return document.documentElement.clientWidth")
    assert phone.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scroll
    assert phone.execute_script("return document.documentElement.scrollHeight") < 8 * PHONE[1]  # a page, not a dump


def test_no_console_errors_under_the_content_security_policy(browser, server):
    browser.get_log("browser")  # drop what earlier tests left
    browser.get(server)
    WebDriverWait(browser, 10).until(lambda b: b.execute_script("return document.readyState") == "complete")
    browser.get(f"{server}/docs")
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".docs-op"))
    assert [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
