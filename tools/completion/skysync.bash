# skysync.bash - bash completion for skysync(1): the commands, the global
# options and each command's own options, subcommands (session, outbox,
# data patch), and application ids from the cache (`skysync apps`, read
# from the cache the command line names with --db, else the default one).
# Installed as $(datadir)/bash-completion/completions/skysync, where
# bash-completion loads it on the first `skysync <TAB>`; or source it.
# Completing never writes: `skysync apps` opens the cache read-only, and
# its errors (no cache yet) are discarded.

_skysync_apps()
{
	local db=$1
	# The ids are the first field of each JSON line; jq is not required.
	skysync ${db:+--db "$db"} apps 2>/dev/null |
		sed -n 's/^{"applicationId":"\([^"\\]*\)".*/\1/p'
}

_skysync()
{
	local cur prev words cword
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}

	local commands="apply get data apps roles stats check backup events
		query sync session props participant event outbox help"
	local globals="--db --format --version -V --help -h"

	# Values of the global options.
	case $prev in
	--db)
		COMPREPLY=($(compgen -d -- "$cur"))
		return 0
		;;
	--format)
		COMPREPLY=($(compgen -W "json table prometheus" -- "$cur"))
		return 0
		;;
	esac

	# Find the command (the first word that is not a global option or
	# its value) and the --db given, if any; count the positions after.
	local i cmd= cmdi=0 db= w
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		--db | --format)
			[[ $w == --db ]] && db=${COMP_WORDS[i + 1]}
			((i++))
			;;
		--db=*) db=${w#--db=} ;;
		-*) ;;
		*)
			if [[ -z $cmd ]]; then
				cmd=$w
				cmdi=$i
			fi
			;;
		esac
	done

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$globals" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return 0
	fi

	local opts= sub=
	case $cmd in
	get | data | apps | roles | events | stats) opts="--format" ;;
	query) opts="--explain --limit --cursor --as --groups --format" ;;
	sync) opts="--server --broker --realm --user --password-file --follow
		--print-changes --reconcile --cafile --insecure --quiet --verbose" ;;
	session) opts="--description --prop --app-version"
		sub="create close rename describe patch" ;;
	participant) opts="--type --group" ;;
	outbox) sub="list retry drop" ;;
	help) sub=$commands ;;
	esac

	case $prev in
	--password-file | --cafile)
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0
		;;
	--server | --broker | --realm | --user | --reconcile | --limit | \
		--cursor | --as | --groups | --description | --prop | \
		--app-version | --type | --group)
		return 0 # a value the shell cannot guess
		;;
	esac

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
		return 0
	fi

	# The position of the word among the command's arguments (1: first),
	# options and their values not counted.
	local pos args=0
	for ((i = cmdi + 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--db | --format | --server | --broker | --realm | --user | \
			--password-file | --cafile | --reconcile | --limit | \
			--cursor | --as | --groups | --description | --prop | \
			--app-version | --type | --group)
			((i++))
			;;
		-*) ;;
		*) ((args++)) ;;
		esac
	done
	pos=$((args + 1))

	if [[ -n $sub && $pos -eq 1 ]]; then
		[[ $cmd == data ]] || {
			COMPREPLY=($(compgen -W "$sub" -- "$cur"))
			return 0
		}
	fi
	case $cmd in
	apply)
		COMPREPLY=($(compgen -f -- "$cur"))
		;;
	backup)
		COMPREPLY=($(compgen -d -- "$cur"))
		;;
	data)
		# `data APP SID` or `data patch APP SID JSON`.
		if ((pos == 1)); then
			COMPREPLY=($(compgen -W "patch $(_skysync_apps "$db")" -- "$cur"))
		elif ((pos == 2)) && [[ ${COMP_WORDS[cmdi + 1]} == patch ]]; then
			COMPREPLY=($(compgen -W "$(_skysync_apps "$db")" -- "$cur"))
		fi
		;;
	get | roles | events | query | props | participant | event)
		((pos == 1)) &&
			COMPREPLY=($(compgen -W "$(_skysync_apps "$db")" -- "$cur"))
		;;
	session)
		((pos == 2)) &&
			COMPREPLY=($(compgen -W "$(_skysync_apps "$db")" -- "$cur"))
		;;
	esac
	return 0
}

complete -F _skysync skysync
