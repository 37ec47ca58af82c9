# bash completion for profilectl (installed by `make install`).
_profilectl()
{
    local cur prev words cword
    _init_completion 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }
    local commands="space settings ingest inspect export explain check log rebuild migrate
        token source regulation unmerge compact filter import import-template changes"
    case $prev in
    --data)
        COMPREPLY=($(compgen -d -- "$cur"))
        return
        ;;
    --settings | --source | --batch | --events | --since | --until | --name | --limit | --after | \
        --replicate)
        return
        ;;
    --preset)
        COMPREPLY=($(compgen -W "recommended" -- "$cur"))
        return
        ;;
    --collection)
        COMPREPLY=($(compgen -W "users accounts" -- "$cur"))
        return
        ;;
    --role)
        COMPREPLY=($(compgen -W "read admin" -- "$cur"))
        return
        ;;
    --format)
        COMPREPLY=($(compgen -W "ndjson csv" -- "$cur"))
        return
        ;;
    esac
    # the command is the first word that is not an option or an option's value
    local i cmd="" data=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        --data) data=${words[i + 1]}; ((i++)) ;;
        -*) ;;
        *) cmd=${words[i]}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands --data --json --help --version" -- "$cur"))
        return
    fi
    local sub=""
    case $cmd in
    space) sub="create list" ;;
    settings) sub="get set check" ;;
    token) sub="create list revoke" ;;
    source) sub="create list origins" ;;
    regulation) sub="create list show" ;;
    filter) sub="create list enable disable delete" ;;
    esac
    if [[ -n $sub && $((i + 1)) -eq $cword ]]; then
        COMPREPLY=($(compgen -W "$sub" -- "$cur"))
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--json --help --data --preset --settings --source --batch
            --verbose --events --collection --messages --since --until --dry-run --force
            --keep-apart --role --name --after --limit --table --format --follow
            --replicate" -- "$cur"))
        return
    fi
    # a space name where one is expected: the spaces of the data directory
    local spaces
    spaces=$(profilectl ${data:+--data "$data"} space list 2>/dev/null)
    COMPREPLY=($(compgen -W "$spaces" -- "$cur") $(compgen -f -- "$cur"))
}
complete -F _profilectl profilectl
