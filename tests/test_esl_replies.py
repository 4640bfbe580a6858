"""FreeSWITCH api replies read as facts: the texts a real 1.10.12 sent (recorded in this repo's sessions)."""

from __future__ import annotations

from orchestrator.esl import replies
from orchestrator.media import dialects

# `sofia status` while the tls profile was restarting (it is not listed at all)
STATUS_TLS_RESTARTING = (
    "                     Name\t   Type\t                                      Data\tState\n"
    "=================================================================================================\n"
    "                      tcp\tprofile\t             sip:mod_sofia@127.0.0.1:25060\tRUNNING (0)\n"
    "          tcp::office-pbx\tgateway\t  sip:sipagent@10.20.0.10:5060;transport=tcp\tNOREG\n"
    "=================================================================================================\n"
    "1 profile 0 aliases\n"
)


def test_sofia_status_profiles_and_gateways() -> None:
    assert replies.sofia_profiles(STATUS_TLS_RESTARTING) == {"tcp": ("sip:mod_sofia@127.0.0.1:25060", "RUNNING")}
    assert replies.sofia_gateways(STATUS_TLS_RESTARTING) == {"office-pbx": "NOREG"}


def test_profile_restart_replies() -> None:
    too_early = "Profile tls must be up for at least 10 seconds to stop/restart.\nPlease wait 7 seconds\n"
    assert replies.restart_too_early(too_early) == 7
    assert replies.restart_too_early("Reload XML [Success]\nrestarting: tls") is None
    assert replies.invalid_profile("Invalid Profile [tls]")
    assert not replies.invalid_profile("Reload XML [Success]\ntls started successfully\n")


def test_show_api_rows_and_fork_playback() -> None:
    drachtio = (
        "name,description,syntax,ikey\nuuid_audio_fork,audio_fork API,<uuid> [start | stop ] [bugname] [metadata],"
        "mod_audio_fork\n\n1 total.\n"
    )
    row = replies.api_row(drachtio, "uuid_audio_fork")
    assert row is not None and dialects.playback_modes(row) == ("file",)
    assert replies.api_row("\n0 total.\n", "uuid_audio_fork") is None
    jambonz = "uuid_audio_fork,audio_fork API,<uuid> [metadata] [bidirectionalAudio_enabled],mod_audio_fork"
    assert dialects.playback_modes(jambonz) == ("streaming", "file")
