"""No customer data without login; the password form and users from the environment."""

import pytest
from console_apptest import APP, DEV_PASSWORD, PAGES, texts
from streamlit.testing.v1 import AppTest

from console import auth


def _anonymous(at: AppTest) -> str:
    at.run()
    assert not at.exception, at.exception
    return texts(at)


def test_entry_shows_only_the_login_form_without_a_session(console_env):
    at = AppTest.from_file(APP, default_timeout=60)
    shown = _anonymous(at)
    assert "Log in" in [b.label for b in at.button]
    assert not at.dataframe and not at.metric
    assert "Ada" not in shown and "Grace" not in shown


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_page_opened_directly_refuses_an_anonymous_session(console_env, page):
    at = AppTest.from_file(str(AppTest.from_file(APP)._script_path).replace("app.py", PAGES[page]),
                           default_timeout=60)
    shown = _anonymous(at)
    assert "Please log in" in shown
    assert not at.dataframe and not at.metric and not at.text_area
    assert "Ada" not in shown and "ada@example.com" not in shown


def test_wrong_password_is_refused_and_right_one_opens_the_overview(console_env):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input(key="login_user").input("lead")
    at.text_input(key="login_password").input("not the password")
    at.button[0].click().run()
    assert "Unknown user or wrong password." in [e.value for e in at.error]
    assert not at.metric

    at.text_input(key="login_password").input(DEV_PASSWORD)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["console_user"] == "lead"
    assert "Messages today" in [m.label for m in at.metric]


def test_users_from_the_environment_verify_against_bcrypt_hashes():
    users = auth.parse_users(f"ana:{auth.hash_password('s3cret-pass')},ben:{auth.hash_password('other')}")
    assert set(users) == {"ana", "ben"}
    assert auth.verify(users, "ana", "s3cret-pass")
    assert not auth.verify(users, "ana", "other")
    assert not auth.verify(users, "nobody", "s3cret-pass")
    with pytest.raises(ValueError, match=r"not user\[:role\]:bcrypt-hash"):
        auth.parse_users("ana:plaintext")


def test_development_password_is_created_once_with_owner_only_permissions(tmp_path):
    from fte.settings import Settings

    settings = Settings(FTE_DATA_DIR=tmp_path, ENVIRONMENT="development", CONSOLE_USERS=None,
                        CONSOLE_DEV_PASSWORD=None)
    assert auth.needs_dev_password(settings)
    password, created = auth.ensure_dev_password(settings)
    again, created_again = auth.ensure_dev_password(settings)
    assert created and not created_again and again == password and len(password) >= 16
    assert (auth.dev_password_file(settings).stat().st_mode & 0o777) == 0o600
    assert auth.verify(auth.load_users(settings), auth.DEV_USER, password)
    production = Settings(FTE_DATA_DIR=tmp_path, ENVIRONMENT="production", DATABASE_URL="postgresql://x/y",
                          KAFKA_BOOTSTRAP_SERVERS="k:9092", TWILIO_AUTH_TOKEN="real-token")
    assert auth.DEV_USER not in auth.load_users(production)


def test_sign_out_forgets_the_user_and_shows_the_login_form_again(console_env):
    from console_apptest import open_page

    at = open_page("overview")
    at.switch_page("pages/account/sign_out.py")
    at.run()
    assert not at.exception, at.exception
    assert "console_user" not in at.session_state
    assert "Log in" in [b.label for b in at.button] and not at.metric


def test_single_sign_on_is_offered_when_oidc_is_configured(console_env):
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "fte-console", "client_secret": "s",
                          "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration"}
    at.run()
    assert not at.exception, at.exception
    assert "Log in with single sign-on" in [b.label for b in at.button]
    assert not at.metric and not at.dataframe


def test_fte_console_prints_a_hash_and_the_development_password_once(tmp_path):
    import os
    import subprocess
    import sys

    import bcrypt
    from console_apptest import REPO

    out = subprocess.run([sys.executable, "-m", "fte.cli", "console", "hash-password"], cwd=REPO,
                         input="pa55-word\n", capture_output=True, text=True, check=True).stdout.strip()
    assert bcrypt.checkpw(b"pa55-word", out.encode())

    env = {**os.environ, "FTE_DATA_DIR": str(tmp_path), "ENVIRONMENT": "development"}
    env.pop("CONSOLE_DEV_PASSWORD", None)
    env.pop("CONSOLE_USERS", None)
    first = subprocess.run([sys.executable, "-m", "fte.cli", "console", "dev-password"], cwd=REPO, env=env,
                           capture_output=True, text=True, check=True).stdout
    second = subprocess.run([sys.executable, "-m", "fte.cli", "console", "dev-password"], cwd=REPO, env=env,
                            capture_output=True, text=True, check=True).stdout
    password = (tmp_path / "console" / "dev-password").read_text().strip()
    assert password in first and password not in second and "password in" in second
