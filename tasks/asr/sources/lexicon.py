"""Word lists of the embedded speech corpus's grammar (see ``grammar.py``).

Every word is lower-case letters and apostrophes only, so the default character vocabulary of the
speech task (a-z, apostrophe, space) covers every transcript. Nouns and verbs list their forms
explicitly where English is irregular; the regular forms are derived by ``grammar.py``.

Format of the multi-line strings: one entry per line; for nouns ``singular [plural]`` (plural
given only when irregular), for verbs ``base past`` (the past tense is always given, because the
``-ing`` form's consonant doubling is read off it).
"""

from __future__ import annotations

__all__ = [
    "PEOPLE",
    "ANIMALS",
    "THINGS",
    "FOODS",
    "PLACES",
    "TRANSITIVE_VERBS",
    "INTRANSITIVE_VERBS",
    "ADJECTIVES",
    "MANNER_ADVERBS",
    "FREQUENCY_ADVERBS",
    "NAMES",
    "DAYS",
    "MONTHS",
    "PLACE_PREPOSITIONS",
    "UNITS",
]

PEOPLE = """
farmer
teacher
doctor
student
child children
woman women
man men
baker
driver
nurse
pilot
sailor
soldier
painter
writer
singer
dancer
player
worker
friend
neighbor
king
queen
prince
princess
boy
girl
lawyer
judge
cook
gardener
hunter
fisherman fishermen
scientist
engineer
artist
musician
mother
father
brother
sister
uncle
aunt
cousin
grandmother
grandfather
baby
guard
captain
chef
clerk
manager
visitor
stranger
traveler
merchant
tailor
carpenter
plumber
waiter
priest
poet
actor
author
reporter
climber
runner
swimmer
pupil
guest
owner
lady
gentleman gentlemen
thief thieves
wife wives
husband
son
daughter
farmhand
shepherd
butcher
banker
dentist
officer
mayor
professor
librarian
mechanic
miner
barber
"""

ANIMALS = """
dog
cat
horse
cow
sheep sheep
goat
pig
duck
goose geese
mouse mice
rabbit
fox
wolf wolves
bear
lion
tiger
monkey
elephant
bird
eagle
owl
frog
whale
dolphin
snake
spider
bee
butterfly
deer deer
donkey
camel
parrot
chicken
turkey
squirrel
puppy
kitten
pony
zebra
giraffe
"""

THINGS = """
book
box
cup
plate
bowl
spoon
knife knives
fork
bottle
glass
chair
table
desk
lamp
clock
watch
key
letter
card
map
picture
photo
radio
phone
computer
camera
basket
bag
coat
hat
shirt
shoe
boot
dress
jacket
scarf scarves
glove
ring
necklace
blanket
pillow
towel
bucket
ladder
hammer
rope
candle
brush
mirror
window
door
fence
gate
ball
kite
toy
drum
guitar
piano
violin
ticket
coin
wallet
umbrella
pencil
pen
newspaper
magazine
bicycle
car
truck
boat
ship
train
bus
wagon
flower
leaf leaves
stone
shell
feather
nest
envelope
parcel
suitcase
notebook
sweater
helmet
trumpet
statue
vase
kettle
teapot
jar
drawer
shelf shelves
sofa
carpet
curtain
wheel
engine
tractor
sack
barrel
shovel
axe
saw
needle
button
ribbon
medal
crown
sword
shield
flag
lantern
compass
telescope
globe
"""

FOODS = """
apple
orange
banana
lemon
potato potatoes
tomato tomatoes
carrot
onion
cake
sandwich
egg
cookie
pie
pear
peach
plum
cherry
melon
biscuit
pizza
sausage
pancake
cucumber
pumpkin
mushroom
"""

PLACES = """
garden
kitchen
market
park
river
lake
forest
village
city
town
school
library
station
hospital
church
bridge
street
road
beach
island
mountain
valley
field
farm
office
shop
store
hotel
museum
harbor
castle
cave
hill
desert
cottage
palace
bakery
restaurant
theater
stadium
airport
factory
prison
temple
tower
barn
meadow
orchard
jungle
canyon
"""

TRANSITIVE_VERBS = """
see saw
find found
take took
bring brought
buy bought
sell sold
carry carried
open opened
close closed
paint painted
wash washed
clean cleaned
fix fixed
build built
break broke
hold held
catch caught
throw threw
drop dropped
push pushed
pull pulled
lift lifted
move moved
hide hid
keep kept
lose lost
want wanted
need needed
like liked
love loved
watch watched
follow followed
help helped
call called
meet met
pick picked
cook cooked
eat ate
draw drew
fill filled
borrow borrowed
send sent
show showed
check checked
count counted
measure measured
order ordered
deliver delivered
share shared
guard guarded
chase chased
feed fed
touch touched
kick kicked
describe described
remember remembered
forget forgot
notice noticed
admire admired
repair repaired
polish polished
wrap wrapped
pack packed
load loaded
steal stole
choose chose
grab grabbed
shake shook
fold folded
collect collected
drag dragged
bury buried
paint painted
examine examined
photograph photographed
weigh weighed
hug hugged
rescue rescued
hire hired
scrub scrubbed
sketch sketched
inspect inspected
return returned
carve carved
"""

INTRANSITIVE_VERBS = """
walk walked
run ran
swim swam
sleep slept
sing sang
dance danced
laugh laughed
smile smiled
cry cried
jump jumped
wait waited
rest rested
sit sat
stand stood
arrive arrived
travel traveled
shout shouted
whisper whispered
work worked
play played
fly flew
fall fell
hurry hurried
wander wandered
stay stayed
listen listened
talk talked
speak spoke
cough coughed
sneeze sneezed
yawn yawned
shiver shivered
relax relaxed
kneel knelt
crawl crawled
march marched
drift drifted
sail sailed
skate skated
complain complained
pray prayed
dream dreamed
disappear disappeared
appear appeared
vanish vanished
whistle whistled
hide hid
escape escaped
sneak sneaked
tremble trembled
giggle giggled
limp limped
stumble stumbled
hop hopped
paddle paddled
camp camped
fish fished
bow bowed
"""

ADJECTIVES = """
red
blue
green
yellow
black
white
brown
orange
purple
pink
grey
silver
golden
big
small
large
tiny
huge
little
tall
short
long
wide
narrow
thick
thin
heavy
light
old
new
young
ancient
modern
fresh
good
bad
nice
beautiful
ugly
pretty
lovely
strange
famous
quiet
loud
noisy
busy
lazy
brave
clever
kind
angry
happy
sad
tired
hungry
thirsty
sleepy
lucky
careful
friendly
gentle
proud
shy
polite
rude
honest
rich
poor
wise
foolish
calm
nervous
cheerful
curious
lonely
serious
funny
silly
clean
dirty
wet
dry
warm
cold
hot
cool
soft
hard
smooth
rough
sharp
bright
dark
empty
full
broken
cheap
expensive
simple
strong
weak
fast
slow
round
square
flat
deep
sweet
sour
bitter
salty
tasty
wooden
plastic
woolen
wild
tame
sick
healthy
dangerous
rare
fancy
plain
elegant
shiny
dusty
muddy
rusty
sticky
striped
spotted
fluffy
crooked
fierce
grumpy
clumsy
handsome
delicate
enormous
gigantic
precious
mysterious
peaceful
"""

MANNER_ADVERBS = """
quickly
slowly
quietly
loudly
carefully
happily
sadly
gently
suddenly
finally
easily
badly
proudly
calmly
eagerly
bravely
nervously
politely
rudely
softly
angrily
patiently
silently
secretly
honestly
kindly
wisely
safely
neatly
briskly
"""

FREQUENCY_ADVERBS = """
often
rarely
never
always
sometimes
usually
seldom
"""

NAMES = """
anna
maria
john
peter
david
sarah
emma
james
robert
linda
michael
susan
thomas
laura
daniel
lucy
george
alice
henry
kate
paul
helen
mark
rachel
simon
julia
oliver
sophie
jack
grace
william
olivia
charlotte
edward
victor
martha
frank
nora
oscar
ruby
"""

DAYS = """
monday
tuesday
wednesday
thursday
friday
saturday
sunday
"""

MONTHS = """
january
february
march
april
may
june
july
august
september
october
november
december
"""

PLACE_PREPOSITIONS = """
in
near
behind
beside
inside
outside
under
across
along
through
past
around
"""

UNITS = """
meter
mile
hour
minute
day
week
dollar
pound
kilogram
year
"""
