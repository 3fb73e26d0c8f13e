"""End-to-end in a real headless Chromium (Selenium + Debian's chromium and
chromedriver) against gunicorn: a real photo and its result, a bad file and its
error, the "not one of the known models" state, an example photo, script
injection through a file name, a phone-width layout and the API page."""

import shutil

import pytest

from tests.conftest import SF_TEST, curl, require, shipped_validation_samples

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
DESKTOP, PHONE = (1000, 1100), (390, 844)  # CSS pixels; the phone is an iPhone 12-14 screen


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=%d,%d" % DESKTOP):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


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


def test_phone_width_layout(browser, server):
    sample = next(s for s in shipped_validation_samples() if s.label == "toyota_camry")
    browser.set_window_size(*PHONE)
    try:
        viewport = browser.execute_script("return document.documentElement.clientWidth")
        assert upload(browser, server, sample.path) == "done"
        assert browser.execute_script("return document.documentElement.scrollWidth") <= viewport  # no sideways scroll
        for element_id in ("drop-zone", "classify", "results-card"):
            box = browser.find_element(By.ID, element_id).rect
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport, element_id
        button = browser.find_element(By.ID, "classify").rect
        assert button["width"] > viewport * 0.8  # full-width button on small screens
    finally:
        browser.set_window_size(*DESKTOP)


def test_api_page_renders_the_openapi_document(browser, server):
    browser.get(f"{server}/docs")
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".docs-op h3"))
    titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".docs-op h3")]
    assert "POST /predict" in titles and "GET /v1/models/{name}" in titles


def test_no_console_errors_under_the_content_security_policy(browser, server):
    browser.get_log("browser")  # drop what earlier tests left
    browser.get(server)
    WebDriverWait(browser, 10).until(lambda b: b.execute_script("return document.readyState") == "complete")
    browser.get(f"{server}/docs")
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".docs-op"))
    assert [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
