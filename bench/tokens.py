"""Device tokens of the bench users, shared by notifier's seed and the peers' (which cannot import notifier)."""
import hashlib


def ios_token(index: int) -> str:
    return hashlib.sha256(f"ios-{index}".encode()).hexdigest()  # 64 hex characters, as APNs tokens are


def android_token(index: int) -> str:
    return f"bench-android-{index}-" + hashlib.md5(str(index).encode()).hexdigest()


def push_token(user: int, device: int) -> str:
    return f"bench-push-{user}-{device}-" + hashlib.md5(f"{user}/{device}".encode()).hexdigest()


def campaign_push_token(user: int) -> str:
    return f"bench-cpush-{user}-" + hashlib.md5(f"c{user}".encode()).hexdigest()
