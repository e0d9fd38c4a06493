"""The limits of a request that every front end states and checks (the CLI's help and
checks, the server, the page): plain numbers and names with no imports, so that
`sdmtalk generate --help` prints them without loading the stages that enforce them."""

MOTIONS = ("sdm", "energy", "static", "linear")  # generate --motion (pipeline.load_motion_model)
DUB_MOTIONS = ("sdm", "linear", "energy")  # dub --motion: static would not move the lips
MAX_SAMPLES = 100  # --num-samples: each sample is a full video
MAX_TEXT_CHARS = 1000  # typed text: about a minute of speech (the page, the API and --text alike)

# Documented ranges of the user controls (README "Motion controls"). Beyond them the mesh warp
# tears: lips past ~3x open into a brown field; pose past ~3x throws the head off the crop.
SEED_MAX = 2**31 - 1  # numpy, torch and the blink schedule all take it
SCALE_RANGES = {"pose_scale": (0.0, 3.0), "lip_scale": (0.0, 2.0), "rhythm_scale": (0.0, 3.0)}
