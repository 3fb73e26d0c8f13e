"""End-to-end in a real headless Chromium (Selenium + Debian's chromium and
chromedriver) against gunicorn: upload a real photo and read the result;
upload a bad file and read the error."""

import shutil

import pytest

from tests.conftest import shipped_validation_samples

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1000,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def upload(browser, server, path):
    browser.get(server)
    browser.find_element(By.ID, "file-input").send_keys(str(path))
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "app").get_attribute("data-state") in ("done", "error"))
    return browser.find_element(By.ID, "app").get_attribute("data-state")


def pretty(label):
    return " ".join(word.capitalize() for word in label.split("_"))


def test_page_classifies_a_real_held_out_photo(browser, server):
    sample = next(s for s in shipped_validation_samples() if s.label == "lada_kalina")
    assert upload(browser, server, sample.path) == "done"
    rows = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    assert len(rows) == 3
    assert rows[0].find_element(By.CSS_SELECTOR, ".result-label").text == pretty(sample.label)
    assert rows[0].find_element(By.CSS_SELECTOR, ".result-prob").text.endswith("%")
    assert browser.find_element(By.ID, "preview").get_attribute("src").startswith("blob:")


def test_page_shows_the_api_error_for_a_bad_file(browser, server, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a photo")
    assert upload(browser, server, fake) == "error"
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "not an image" in error.text
