"""The console's UI text in Korean (the default) and English. A page's language comes from
``?lang=``, then the ``ars_lang`` cookie, then Accept-Language."""

from __future__ import annotations

LANGS = ("ko", "en")
DEFAULT_LANG = "ko"

# key → (Korean, English)
MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("ARS 운영 콘솔", "ARS operator console"),
    "skip": ("본문으로 건너뛰기", "Skip to content"),
    "nav": ("주 메뉴", "Main menu"),
    "live": ("실시간 통화", "Live calls"),
    "history": ("통화 이력", "Call history"),
    "scenarios": ("시나리오", "Scenarios"),
    "usage": ("사용량", "Usage"),
    "alerts": ("알림", "Alerts"),
    "logout": ("로그아웃", "Sign out"),
    "login": ("로그인", "Sign in"),
    "username": ("아이디", "Username"),
    "password": ("비밀번호", "Password"),
    "login_failed": ("아이디 또는 비밀번호가 올바르지 않습니다.",
                     "The username or password is not correct."),
    "login_throttled": ("로그인 시도가 너무 많습니다. 잠시 후 다시 시도하세요.",
                        "Too many sign-in attempts. Try again in a few minutes."),
    "session_expired": ("세션이 만료되었습니다. 다시 로그인하세요.",
                        "Your session has ended. Please sign in again."),
    "signed_in_as": ("로그인 사용자", "Signed in as"),
    "role_admin": ("관리자", "Administrator"),
    "role_tenant": ("고객사 운영자", "Tenant operator"),
    "language": ("언어", "Language"),
    "call": ("통화", "Call"),
    "calls": ("통화 수", "Calls"),
    "tenant": ("고객사", "Tenant"),
    "all_tenants": ("전체 고객사", "All tenants"),
    "scenario": ("시나리오", "Scenario"),
    "destination": ("수신 번호", "Destination"),
    "state": ("상태", "State"),
    "outcome": ("결과", "Outcome"),
    "reason": ("사유", "Reason"),
    "created": ("생성 시각", "Created"),
    "answered_at": ("응답 시각", "Answered"),
    "ended_at": ("종료 시각", "Ended"),
    "attempts": ("시도", "Attempts"),
    "reference": ("참조번호", "Reference"),
    "duration": ("통화 시간", "Duration"),
    "updated": ("갱신 시각", "Updated"),
    "age": ("경과 시간 (초)", "Age (s)"),
    "no_calls": ("해당하는 통화가 없습니다.", "No calls match."),
    "no_live_calls": ("진행 중이거나 대기 중인 통화가 없습니다.",
                      "No calls are running or queued."),
    "live_status": ("진행 중 {active}건, 대기 {queued}건", "{active} running, {queued} queued"),
    "live_paused": ("실시간 갱신이 끊겼습니다. 다시 연결하는 중…",
                    "Live updates lost; reconnecting…"),
    "search": ("검색", "Search"),
    "search_hint": ("통화 ID, 참조번호 또는 번호 끝자리", "Call id, reference or last digits"),
    "filter": ("조회", "Filter"),
    "any": ("전체", "Any"),
    "from": ("시작일", "From"),
    "to": ("종료일", "To"),
    "next_page": ("다음 페이지", "Next page"),
    "transitions": ("상태 변화", "State changes"),
    "at": ("시각", "At"),
    "from_state": ("이전 상태", "From"),
    "to_state": ("다음 상태", "To"),
    "node": ("노드", "Node"),
    "timeline": ("진행 기록 (DTMF 포함, 비밀 값은 가림)", "Timeline (DTMF, secrets masked)"),
    "event": ("이벤트", "Event"),
    "no_timeline": ("기록된 진행 내역이 없습니다.", "No timeline was recorded."),
    "recording": ("녹음", "Recording"),
    "no_recording": ("녹음이 없습니다.", "No recording."),
    "download_wav": ("WAV 내려받기", "Download WAV"),
    "evidence": ("증거 자료", "Evidence"),
    "download_evidence": ("증거 매니페스트 내려받기", "Download the evidence manifest"),
    "verified_ok": ("검증됨: 서명과 파일 해시가 일치합니다",
                    "Verified: signature and file hashes match"),
    "verified_bad": ("검증 실패", "Verification failed"),
    "no_evidence": ("증거 자료가 없습니다.", "No evidence bundle."),
    "webhooks": ("웹훅 전송", "Webhook deliveries"),
    "status": ("상태", "Status"),
    "result": ("결과 값", "Result fields"),
    "params": ("파라미터 (비밀 값은 가림)", "Parameters (secrets masked)"),
    "not_found": ("찾을 수 없습니다.", "Not found."),
    "forbidden": ("권한이 없습니다.", "You do not have access."),
    "csrf_failed": ("보안 토큰이 맞지 않습니다. 페이지를 새로 고친 뒤 다시 시도하세요.",
                    "The security token did not match. Reload the page and try again."),
    "title": ("제목", "Title"),
    "type": ("유형", "Type"),
    "steps": ("단계 수", "Steps"),
    "step": ("단계", "Step"),
    "parameters": ("파라미터", "Parameters"),
    "flow": ("흐름도", "Flow"),
    "flow_text": ("흐름 (텍스트)", "Flow (text)"),
    "yaml": ("시나리오 YAML", "Scenario YAML"),
    "yaml_editor": ("시나리오 YAML 편집", "Edit the scenario YAML"),
    "as_edited": ("편집한 내용 기준", "as edited"),
    "validate": ("검증", "Validate"),
    "valid": ("오류가 없습니다.", "No errors."),
    "errors_found": ("오류 {n}건", "{n} error(s)"),
    "line": ("줄", "Line"),
    "simulator": ("시뮬레이터", "Simulator"),
    "simulator_help": ("전화 없이 시나리오를 실행하고 수신자가 듣는 음성을 재생합니다.",
                       "Runs the scenario without a phone and plays what the callee hears."),
    "keys": ("누를 키 (입력마다 한 줄)", "Keys pressed (one line per input)"),
    "keys_help": ("예: 123456 — 빈 줄은 무응답, @12.5=1 은 12.5초에 1",
                  "e.g. 123456 — an empty line is silence, @12.5=1 presses 1 at 12.5 s"),
    "run": ("실행", "Run"),
    "heard": ("수신자가 들은 음성", "What the callee heard"),
    "month": ("월", "Month"),
    "answered": ("응답", "Answered"),
    "verified": ("인증 성공", "Verified"),
    "billable": ("과금 대상", "Billable"),
    "answer_rate": ("응답률", "Answer rate"),
    "success_rate": ("성공률", "Success rate"),
    "export_csv": ("정산 CSV 내려받기", "Export settlement CSV"),
    "usage_rules": ("과금 대상: 수신자가 응답하고 시나리오가 끝까지 진행된 통화(결과 무관). "
                    "인증 성공: 결과가 success인 통화.",
                    "Billable: the person answered and the scenario ran to its end (any "
                    "verdict). Verified: outcome success."),
    "no_usage": ("이 달에는 통화가 없습니다.", "No calls this month."),
    "rates_chart": ("일별 응답률과 성공률", "Answer and success rate per day"),
    "day": ("날짜", "Day"),
    "total": ("합계", "Total"),
    "rule": ("규칙", "Rule"),
    "message": ("내용", "Message"),
    "since": ("시작", "Since"),
    "notified": ("통지", "Notified"),
    "no_alerts": ("알림이 없습니다.", "No alerts."),
    "firing": ("발생 중", "Firing"),
    "resolved": ("해소됨", "Resolved"),
    "bad_request": ("요청이 올바르지 않습니다", "Bad request"),
    "open": ("열기", "Open"),
}

STATE_NAMES: dict[str, tuple[str, str]] = {
    "queued": ("대기", "queued"), "dialing": ("발신 중", "dialing"),
    "ringing": ("벨 울림", "ringing"), "answered": ("통화 중", "answered"),
    "finished": ("완료", "finished"), "failed": ("실패", "failed"),
    "canceled": ("취소", "canceled"),
}


def translate(lang: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``lang`` (the key itself when unknown, so a gap shows)."""
    pair = MESSAGES.get(key)
    text = key if pair is None else pair[0 if lang == "ko" else 1]
    return text.format(**values) if values else text


def state_name(lang: str, state: str) -> str:
    pair = STATE_NAMES.get(state)
    return state if pair is None else pair[0 if lang == "ko" else 1]


def pick_lang(query: str | None, cookie: str | None, accept: str | None) -> str:
    for value in (query, cookie):
        if value in LANGS:
            return value
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGS:
            return tag
    return DEFAULT_LANG
