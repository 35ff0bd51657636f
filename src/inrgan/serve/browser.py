"""Headless Debian chromium for the viewer's browser test and screenshot (selenium, chromium-driver).

The flags keep chromium from reaching for the network at start (background networking, component
updates, sync), which a closed machine refuses, and give it a fresh profile.
"""

from __future__ import annotations

import shutil

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")


def available() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


def chromium_driver(profile_dir, width: int = 1000, height: int = 700):
    """A selenium driver of the system's chromium, in ``width`` x ``height``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
