"""The chat page in headless Chromium (selenium, Debian's chromium + chromium-driver; `.ci/run`
installs them): attach an image and ask, see the reply; ask for a picture, see it drawn; follow up;
start over."""

import shutil

import pytest

from seedmm.world import parse_caption, render

pytest.importorskip("selenium")
if not shutil.which("chromedriver"):
    pytest.skip("chromedriver is not installed (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from conftest import SERVE_KEY as KEY  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,1200"):
        options.add_argument(flag)
    if shutil.which("chromium"):
        options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                              options=options)
    yield driver
    driver.quit()


def replies(driver):
    return driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")


def send(driver, text: str, count: int):
    driver.find_element(By.ID, "prompt").send_keys(text)
    driver.find_element(By.ID, "send").click()
    WebDriverWait(driver, 180).until(lambda d: len(replies(d)) >= count or d.find_elements(By.CSS_SELECTOR, ".msg.error"))
    assert not driver.find_elements(By.CSS_SELECTOR, ".msg.error"), driver.find_element(By.CSS_SELECTOR, ".msg.error").text
    return replies(driver)[-1]


def test_chat_page_image_in_reply_and_picture_out(server, browser, tmp_path):
    render(parse_caption("a large red circle in the center")).save(tmp_path / "scene.png")
    browser.get(server["base"] + "/")
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.ID, "attach").send_keys(str(tmp_path / "scene.png"))
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview img"))
    first = send(browser, "what color is the circle?", 1)
    assert "red" in first.text
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.user img")  # the attached picture is shown
    drawn = send(browser, "Generate an image of a large blue square in the center.", 2)
    image = drawn.find_element(By.TAG_NAME, "img")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 64
    follow = send(browser, "make the blue square red Please generation an image.", 3)
    assert follow.find_elements(By.TAG_NAME, "img")  # the follow-up edits the picture it drew
    assert len(browser.execute_script("return history")) == 6
    browser.find_element(By.ID, "reset").click()
    assert not browser.find_elements(By.CSS_SELECTOR, ".msg")
